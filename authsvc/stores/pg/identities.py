"""Identities in auth.users, through psycopg 3."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from authsvc.errors import Reason, StorageError
from authsvc.stores import COMPLETE, Identity, Profile
from authsvc.stores.pg import profiles, scans
from authsvc.stores.pg.database import Database

log = logging.getLogger("authsvc.stores.postgres")

COLUMNS = (
    "id, email, password_hash, is_anonymous, email_confirmed_at, banned_until, "
    "signup_state, created_at, raw_user_meta_data"
)
INSERT = (
    "INSERT INTO auth.users (id, email, password_hash, raw_user_meta_data, signup_state) "
    "VALUES (%s, %s, %s, %s, 'pending')"
)
INSERT_ANONYMOUS = (
    "INSERT INTO auth.users (id, email, password_hash, is_anonymous, signup_state) "
    "VALUES (%s, NULL, NULL, true, 'pending')"
)
MARK_COMPLETE = (
    "UPDATE auth.users SET signup_state = 'complete', updated_at = now() "
    "WHERE id = %s AND signup_state = 'pending'"
)
REMOVE_PENDING = """
    WITH gone AS (
        DELETE FROM auth.users WHERE id IN (
            SELECT id FROM auth.users
             WHERE id = ANY(%s) AND signup_state = 'pending'
               AND created_at < now() - make_interval(secs => %s)
             FOR UPDATE SKIP LOCKED)
        RETURNING id)
"""
# Only a pending identity is a signup's to remove; a complete one was answered 201.
DELETE_PENDING = "DELETE FROM auth.users WHERE id = %s AND signup_state = 'pending'"


def insert_params(
    user_id: UUID, email: str, password_hash: str | None, signup_profile: dict[str, Any]
) -> tuple[Any, ...]:
    return (user_id, email, password_hash, Jsonb(signup_profile))


def no_row_written() -> StorageError:
    # Without this, the saga would go on to write a profile for an identity that does not
    # exist (and in two databases nothing else would stop it).
    return StorageError(
        Reason.NO_ROW_WRITTEN,
        "the identity insert wrote no row: a BEFORE INSERT trigger on auth.users returning "
        "NULL (or a rule) dropped it",
    )


def to_identity(row: dict[str, Any] | None) -> Identity | None:
    if not row:
        return None
    values = dict(row)
    meta = values.pop("raw_user_meta_data", None)
    return Identity(**values, signup_profile=meta if isinstance(meta, dict) else {})


class PgIdentities:
    """IdentityStore over auth.users in one Postgres database; `profiles_here` when
    public.users is in the same database."""

    def __init__(self, db: Database, profiles_here: bool = False) -> None:
        self.db = db
        self.profiles_here = profiles_here
        self._with_profile = (
            f"SELECT {', '.join(f'u.{c}' for c in COLUMNS.split(', '))}"
            f"{''.join(f', p.{c} AS p_{c}' for c in profiles.COLUMNS.split(', '))} "
            "FROM auth.users u LEFT JOIN public.users p ON p.id = u.id WHERE "
        )

    def create(
        self, user_id: UUID, email: str, password_hash: str | None, signup_profile: dict[str, Any]
    ) -> None:
        if (
            self.db.execute(INSERT, insert_params(user_id, email, password_hash, signup_profile))
            != 1
        ):
            raise no_row_written()

    def create_anonymous(self, user_id: UUID) -> UUID:
        if self.db.execute(INSERT_ANONYMOUS, (user_id,)) != 1:
            raise no_row_written()
        return user_id

    def mark_complete(self, user_id: UUID) -> bool:
        return self.db.execute(MARK_COMPLETE, (user_id,)) == 1

    def delete_pending(self, user_id: UUID) -> bool:
        return self.db.execute(DELETE_PENDING, (user_id,)) == 1

    def get(self, user_id: UUID) -> Identity | None:
        return to_identity(
            self.db.read_one(f"SELECT {COLUMNS} FROM auth.users WHERE id = %s", (user_id,))
        )

    def find_by_email(self, email: str) -> Identity | None:
        return to_identity(
            self.db.read_one(
                f"SELECT {COLUMNS} FROM auth.users WHERE lower(email) = lower(%s)", (email,)
            )
        )

    def find_with_profile(self, email: str) -> tuple[Identity | None, Profile | None, bool]:
        if not self.profiles_here:
            return self.find_by_email(email), None, False
        return self._read_with_profile("lower(u.email) = lower(%s)", email)

    def get_with_profile(self, user_id: UUID) -> tuple[Identity | None, Profile | None, bool]:
        if not self.profiles_here:
            return self.get(user_id), None, False
        return self._read_with_profile("u.id = %s", user_id)

    def _read_with_profile(
        self, where: str, param: object
    ) -> tuple[Identity | None, Profile | None, bool]:
        row = self.db.read_one(self._with_profile + where, (param,))
        if row is None:
            return None, None, True
        profile = {k.removeprefix("p_"): row.pop(k) for k in list(row) if k.startswith("p_")}
        return to_identity(row), profiles.to_profile(profile if profile["id"] else None), True

    def set_password_hash(self, user_id: UUID, new_hash: str, old_hash: str) -> bool:
        return 1 == self.db.execute(
            "UPDATE auth.users SET password_hash = %s, updated_at = now() "
            "WHERE id = %s AND password_hash = %s",
            (new_hash, user_id, old_hash),
        )

    def record_sign_in(self, user_id: UUID) -> None:
        self.db.execute("UPDATE auth.users SET last_sign_in_at = now() WHERE id = %s", (user_id,))

    # -- reconcile primitives -------------------------------------------------------------------

    def scan(self, grace_seconds: int) -> Iterator[list[tuple[str, str, bool]]]:
        return scans.scan(self.db, "auth.users", grace_seconds, "signup_state")

    def present(self, ids: list[UUID]) -> set[UUID]:
        return scans.present(self.db, "auth.users", ids)

    def remove_pending(self, ids: list[UUID], grace_seconds: int) -> tuple[list[UUID], int | None]:
        # SKIP LOCKED leaves alone a row that a signup in flight still holds (one database;
        # across two, a signup whose identity goes fails at its `complete` step instead).
        if not self.profiles_here:
            rows = self.db.fetchall(REMOVE_PENDING + " SELECT id FROM gone", (ids, grace_seconds))
            return [r["id"] for r in rows], None
        # The profiles go in the same statement, so they can be counted: left to the foreign
        # key's ON DELETE CASCADE they would go unseen (it then finds nothing left to do).
        rows = self.db.fetchall(
            REMOVE_PENDING
            + ", profiles AS (DELETE FROM public.users WHERE id IN (SELECT id FROM gone) "
            "RETURNING id) SELECT id, (SELECT count(*) FROM profiles) AS profiles FROM gone",
            (ids, grace_seconds),
        )
        return [r["id"] for r in rows], rows[0]["profiles"] if rows else 0

    def signup_profiles(self, ids: list[UUID]) -> list[Identity]:
        rows = self.db.read(
            f"SELECT {COLUMNS} FROM auth.users WHERE id = ANY(%s) AND signup_state = %s",
            (ids, COMPLETE),
        )
        return [identity for row in rows if (identity := to_identity(row)) is not None]
