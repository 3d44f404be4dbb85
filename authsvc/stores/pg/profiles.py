"""Profiles in public.users, through psycopg 3."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from uuid import UUID

from psycopg import sql

from authsvc.stores import NewProfile, Profile
from authsvc.stores.pg import scans
from authsvc.stores.pg.database import Database

COLUMNS = "id, email, username, display_name, created_at, updated_at"
FIELDS = ("username", "display_name")
INSERT = (
    "INSERT INTO public.users (id, email, username, display_name) VALUES (%s, %s, %s, %s) "
    f"RETURNING {COLUMNS}"
)


def insert_params(profile: NewProfile) -> tuple[Any, ...]:
    return (profile.id, profile.email, profile.username, profile.display_name)


def to_profile(row: dict[str, Any] | None) -> Profile | None:
    return Profile(**{k: row[k] for k in Profile.__dataclass_fields__}) if row else None


class PgProfiles:
    """ProfileStore over public.users; `co_located` when auth.users is in the same database."""

    def __init__(self, db: Database, co_located: bool) -> None:
        self.db = db
        self.co_located = co_located

    def insert(self, profile: NewProfile) -> Profile | None:
        return to_profile(self.db.fetchone(INSERT, insert_params(profile)))

    def get(self, user_id: UUID) -> Profile | None:
        return to_profile(
            self.db.read_one(f"SELECT {COLUMNS} FROM public.users WHERE id = %s", (user_id,))
        )

    def update(self, user_id: UUID, changes: dict[str, Any]) -> Profile | None:
        columns = [c for c in FIELDS if c in changes]
        if not columns:
            return self.get(user_id)
        assignments = sql.SQL(", ").join(
            sql.SQL("{} = {}").format(sql.Identifier(c), sql.Placeholder()) for c in columns
        )
        query = sql.SQL(
            "UPDATE public.users SET {}, updated_at = now() WHERE id = %s RETURNING " + COLUMNS
        ).format(assignments)
        return to_profile(self.db.fetchone(query, [changes[c] for c in columns] + [user_id]))

    def delete(self, user_id: UUID) -> int:
        return self.db.execute("DELETE FROM public.users WHERE id = %s", (user_id,))

    def delete_many(self, ids: list[UUID]) -> int:
        return self.db.execute("DELETE FROM public.users WHERE id = ANY(%s)", (ids,))

    # -- reconcile primitives -------------------------------------------------------------------

    def present(self, ids: list[UUID]) -> set[UUID]:
        return scans.present(self.db, "public.users", ids)

    def scan(self, grace_seconds: int) -> Iterator[list[tuple[str, bool]]]:
        return scans.scan(self.db, "public.users", grace_seconds)

    def remove_orphans(self, ids: list[UUID], grace_seconds: int) -> list[UUID]:
        # With the identities here, the check for one is in the same statement, so an identity
        # created meanwhile keeps its profile; across two databases the caller re-checked.
        no_identity = (
            "AND NOT EXISTS (SELECT 1 FROM auth.users u WHERE u.id = p.id)"
            if self.co_located
            else ""
        )
        rows = self.db.fetchall(
            "DELETE FROM public.users WHERE id IN (SELECT p.id FROM public.users p "
            "WHERE p.id = ANY(%s) AND p.created_at < now() - make_interval(secs => %s) "
            f"{no_identity} FOR UPDATE SKIP LOCKED) RETURNING id",
            (ids, grace_seconds),
        )
        return [r["id"] for r in rows]
