"""Profiles in the Supabase project's public.users, through PostgREST (service role key)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from postgrest.types import ReturnMethod

from authsvc.errors import StorageError
from authsvc.stores import NewProfile, Profile
from authsvc.stores.supabase.clients import SupabaseClients
from authsvc.stores.supabase.identities import timestamp

COLUMNS = "id,email,username,display_name,created_at,updated_at"
FIELDS = ("username", "display_name")
PAGE = 1000  # Supabase's default PostgREST max-rows


def to_profile(row: dict[str, Any] | None) -> Profile | None:
    if not row:
        return None
    return Profile(
        id=UUID(str(row["id"])),
        email=row["email"],
        username=row.get("username"),
        display_name=row.get("display_name"),
        created_at=timestamp(row.get("created_at")),
        updated_at=timestamp(row.get("updated_at")),
    )


def _escape_like(value: str) -> str | None:
    """`value` as an ILIKE pattern matching only itself; None when PostgREST cannot express it
    (it reads `*` as a wildcard and offers no escape for it)."""
    if "*" in value:
        return None
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _page(table: Any, after: str | None) -> Any:
    query = table.select("id,created_at")
    if after is not None:
        query = query.gt("id", after)
    return query.order("id").limit(PAGE)


class SupabaseProfiles:
    """ProfileStore over PostgREST. Supabase Auth's users are in another service: nothing is
    co-located, so a signup compensates by deleting."""

    co_located = False

    def __init__(self, clients: SupabaseClients) -> None:
        self.clients = clients

    def insert(self, profile: NewProfile) -> Profile | None:
        """INSERT with the explicit UUID, asking for the row back; None when no row came back
        (a BEFORE INSERT trigger returning NULL drops it and PostgREST answers `[]`)."""
        row = {
            "id": str(profile.id),
            "email": profile.email,
            "username": profile.username,
            "display_name": profile.display_name,
        }
        response = self.clients.rest_call(
            lambda t: t.insert(row, returning=ReturnMethod.representation)
        )
        return to_profile(response.data[0]) if response.data else None

    def get(self, user_id: UUID) -> Profile | None:
        found = self.clients.rest_call(
            lambda t: t.select(COLUMNS).eq("id", str(user_id)).maybe_single()
        )
        return to_profile(found.data) if found is not None else None

    def id_for_email(self, email: str) -> UUID | None:
        """The id of the one profile with this email (case-insensitively), if there is one."""
        pattern = _escape_like(email)
        if pattern is None:
            return None
        try:
            found = self.clients.rest_call(
                lambda t: t.select("id").ilike("email", pattern).maybe_single()
            )
        except StorageError:
            return None  # several profiles carry this email: the caller looks further
        return UUID(found.data["id"]) if found is not None else None

    def update(self, user_id: UUID, changes: dict[str, Any]) -> Profile | None:
        columns = {c: changes[c] for c in FIELDS if c in changes}
        if not columns:
            return self.get(user_id)
        columns["updated_at"] = datetime.now(UTC).isoformat()
        response = self.clients.rest_call(lambda t: t.update(columns).eq("id", str(user_id)))
        return to_profile(response.data[0]) if response.data else None

    def delete(self, user_id: UUID) -> int:
        response = self.clients.rest_call(lambda t: t.delete().eq("id", str(user_id)))
        return len(response.data or [])

    def delete_many(self, ids: list[UUID]) -> int:
        return sum(self.delete(i) for i in ids)

    # -- reconcile primitives -------------------------------------------------------------------

    def present(self, ids: list[UUID]) -> set[UUID]:
        if not ids:
            return set()
        found = self.clients.rest_call(lambda t: t.select("id").in_("id", [str(i) for i in ids]))
        return {UUID(str(r["id"])) for r in found.data or []}

    def scan(self, grace_seconds: int) -> Iterator[list[tuple[str, bool]]]:
        """Every profile in id order by keyset, until an empty page (a short page proves
        nothing when the project lowers PostgREST's max-rows)."""
        cutoff = datetime.now(UTC) - timedelta(seconds=grace_seconds)
        last: str | None = None
        while True:
            rows = self.clients.rest_call(lambda t, after=last: _page(t, after)).data or []
            if not rows:
                return
            yield [(str(UUID(str(r["id"]))), _older(r, cutoff)) for r in rows]
            last = rows[-1]["id"]

    def remove_orphans(self, ids: list[UUID], grace_seconds: int) -> list[UUID]:
        """The caller re-checked that no identity holds these; delete them one by one."""
        return [i for i in ids if self.delete(i)]


def _older(row: dict[str, Any], cutoff: datetime) -> bool:
    created = timestamp(row.get("created_at"))
    return created is not None and created < cutoff
