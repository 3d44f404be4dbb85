"""Accounts as an operator sees them in Supabase mode: Supabase Auth users (admin API) with
their roles (app_metadata, which only the service role writes) and bans (`ban_duration`), their
profiles behind PostgREST, and the sessions, which are authsvc's own in Postgres."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from supabase_auth.types import User

from authsvc.errors import Reason, StorageError
from authsvc.stores import Account, Identity, Profile, cursors
from authsvc.stores.pg.accounts import PgSessionQueries
from authsvc.stores.pg.database import Database
from authsvc.stores.removal import remove_in_order
from authsvc.stores.supabase.clients import SupabaseClients
from authsvc.stores.supabase.identities import timestamp, to_identity
from authsvc.stores.supabase.profiles import COLUMNS as PROFILE_COLUMNS
from authsvc.stores.supabase.profiles import SupabaseProfiles, to_profile

ROLES = "authsvc_roles"  # app_metadata key
PER_PAGE = 200  # users per admin API page while listing
MAX_PAGES = 10  # admin API pages read for one listing page at most (a search may need many)


def roles_of(user: User) -> frozenset[str]:
    """The roles authsvc granted this user (app_metadata, which only the service role writes)."""
    held = (user.app_metadata or {}).get(ROLES)
    if not isinstance(held, list):
        return frozenset()
    return frozenset(r for r in held if isinstance(r, str))


def _position(after: str | None) -> tuple[int, int]:
    """(admin API page, index in it) to continue from."""
    if after is None:
        return 1, 0
    position = cursors.decode(after)
    if (
        not isinstance(position, list)
        or len(position) != 2
        or not all(type(n) is int for n in position)
        or not (1 <= position[0] < 10**6 and 0 <= position[1] < PER_PAGE)
    ):
        raise cursors.invalid()
    return position[0], position[1]


class SupabaseAccounts(PgSessionQueries):
    """AccountAdmin over Supabase Auth's admin API and PostgREST; sessions in Postgres."""

    def __init__(
        self, clients: SupabaseClients, profiles: SupabaseProfiles, sessions_db: Database
    ) -> None:
        super().__init__(sessions_db)
        self.clients = clients
        self.profiles = profiles

    def _user(self, user_id: UUID) -> User | None:
        try:
            return self.clients.admin_call(lambda admin: admin.get_user_by_id(str(user_id))).user
        except StorageError as exc:
            if exc.reason is Reason.NOT_FOUND:
                return None
            raise

    def _account(self, user: User, profile: Profile | None) -> Account:
        identity = to_identity(user)
        return Account(
            identity.id, identity, profile, roles_of(user), timestamp(user.last_sign_in_at)
        )

    def _profiles(self, ids: list[UUID]) -> dict[UUID, Profile]:
        if not ids:
            return {}
        rows = self.clients.rest_call(
            lambda t: t.select(PROFILE_COLUMNS).in_("id", [str(i) for i in ids])
        ).data
        return {p.id: p for row in rows or [] if (p := to_profile(row)) is not None}

    def page(
        self, search: str | None, after: str | None, limit: int
    ) -> tuple[list[Account], str | None]:
        """The admin API pages by offset, newest first; the cursor is (page, index). A user
        created while an operator pages through can show up twice."""
        page, index = _position(after)
        needle = search.lower() if search else None
        found: list[User] = []
        following: tuple[int, int] | None = None
        for _ in range(MAX_PAGES):
            users = self.clients.admin_call(
                lambda admin, page=page: admin.list_users(page=page, per_page=PER_PAGE)
            )
            last_page = len(users) < PER_PAGE
            at = index
            while at < len(users) and len(found) < limit:
                if needle is None or needle in (users[at].email or "").lower():
                    found.append(users[at])
                at += 1
            if len(found) == limit:
                if at < len(users):
                    following = (page, at)
                elif not last_page:
                    following = (page + 1, 0)
                break
            if last_page:
                break
            page, index = page + 1, 0
        else:
            following = (page, index)  # enough read for one call; the search goes on from here
        profiles = self._profiles([UUID(u.id) for u in found])
        accounts = [self._account(u, profiles.get(UUID(u.id))) for u in found]
        return accounts, cursors.encode(list(following)) if following else None

    def get(self, user_id: UUID) -> Account | None:
        user = self._user(user_id)
        profile = self.profiles.get(user_id)
        if user is not None:
            return self._account(user, profile)
        return Account(user_id, None, profile) if profile is not None else None

    def roles(self, user_id: UUID) -> frozenset[str] | None:
        user = self._user(user_id)
        return roles_of(user) if user is not None else None

    def _update(self, user_id: UUID, attributes: dict[str, Any]) -> User | None:
        try:
            return self.clients.admin_call(
                lambda admin: admin.update_user_by_id(str(user_id), attributes)  # type: ignore[arg-type]
            ).user
        except StorageError as exc:
            if exc.reason is Reason.NOT_FOUND:
                return None
            raise

    def set_roles(self, user_id: UUID, roles: frozenset[str]) -> bool:
        return self._update(user_id, {"app_metadata": {ROLES: sorted(roles)}}) is not None

    def set_ban(self, user_id: UUID, seconds: int | None) -> Identity | None:
        duration = "none" if seconds is None else f"{seconds}s"
        user = self._update(user_id, {"ban_duration": duration})
        return to_identity(user) if user is not None else None

    def _delete_user(self, user_id: UUID) -> bool:
        try:
            self.clients.admin_call(lambda admin: admin.delete_user(str(user_id)))
        except StorageError as exc:
            if exc.reason is Reason.NOT_FOUND:
                return False
            raise
        return True

    def remove(self, user_id: UUID) -> bool:
        # Supabase's own sessions and refresh tokens go with the Auth user.
        return remove_in_order(
            user_id,
            self._delete_user,
            lambda i: self._user(i) is not None,
            self.profiles.delete,
        )
