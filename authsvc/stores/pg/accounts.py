"""Accounts as an operator sees them, in Postgres: identities (auth.users) with their roles and
bans, their profiles (public.users, in the same database or another), closing accounts, and the
sessions an operator ends (schema `authsvc`, with the identities)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from authsvc.errors import DatabaseUnavailable, DeletionFailed, StorageError
from authsvc.stores import Account, Identity, Profile, cursors
from authsvc.stores.pg import identities, profiles
from authsvc.stores.pg.database import Database
from authsvc.stores.removal import remove_in_order

ACCOUNT_COLUMNS = f"{identities.COLUMNS}, roles, last_sign_in_at"
DELETE_PROFILE = "DELETE FROM public.users WHERE id = %s"
DELETE_IDENTITY = "DELETE FROM auth.users WHERE id = %s"


def like_pattern(text: str) -> str:
    """`%text%` for LIKE ... ESCAPE '\\', matching `text` literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def keyset_position(after: str) -> tuple[datetime, UUID]:
    """(created_at, id) of the last row of the previous page, from its cursor."""
    position = cursors.decode(after)
    try:
        created, user_id = position
        return datetime.fromisoformat(created), UUID(user_id)
    except (TypeError, ValueError):
        raise cursors.invalid() from None


class PgSessionQueries:
    """What an operator asks of the sessions (authsvc.sessions, refresh_tokens)."""

    def __init__(self, sessions_db: Database) -> None:
        self.sessions_db = sessions_db

    def revoke_sessions(self, user_id: UUID, reason: str) -> int:
        return self.sessions_db.execute(
            "UPDATE authsvc.sessions SET revoked_at = now(), revoked_reason = %s "
            "WHERE user_id = %s AND revoked_at IS NULL",
            (reason, user_id),
        )

    def session_started(self, session_id: UUID) -> datetime | None:
        row = self.sessions_db.fetchone(
            "SELECT created_at FROM authsvc.sessions WHERE id = %s AND revoked_at IS NULL",
            (session_id,),
        )
        return row["created_at"] if row else None

    def refresh_token_user(self, token_hash: bytes) -> UUID | None:
        row = self.sessions_db.fetchone(
            "SELECT s.user_id FROM authsvc.refresh_tokens rt "
            "JOIN authsvc.sessions s ON s.id = rt.session_id WHERE rt.token_hash = %s",
            (token_hash,),
        )
        return row["user_id"] if row else None


class PgAccounts(PgSessionQueries):
    """AccountAdmin over auth.users and public.users (co-located, or in two databases)."""

    def __init__(self, auth_db: Database, app_db: Database, co_located: bool) -> None:
        super().__init__(auth_db)
        self.auth_db = auth_db
        self.app_db = app_db
        self.co_located = co_located

    def _accounts(self, rows: list[dict[str, Any]]) -> list[Account]:
        ids = [row["id"] for row in rows]
        found = self._profiles(ids) if ids else {}
        return [self._account(row, found.get(row["id"])) for row in rows]

    @staticmethod
    def _account(row: dict[str, Any], profile: Profile | None) -> Account:
        values = dict(row)
        roles = values.pop("roles", None) or []
        last_sign_in = values.pop("last_sign_in_at", None)
        identity: Identity | None = identities.to_identity(values)
        assert identity is not None
        return Account(identity.id, identity, profile, frozenset(roles), last_sign_in)

    def _profiles(self, ids: list[UUID]) -> dict[UUID, Profile]:
        rows = self.app_db.fetchall(
            f"SELECT {profiles.COLUMNS} FROM public.users WHERE id = ANY(%s)", (ids,)
        )
        return {p.id: p for row in rows if (p := profiles.to_profile(row)) is not None}

    def page(
        self, search: str | None, after: str | None, limit: int
    ) -> tuple[list[Account], str | None]:
        conditions, params = [], []
        if search:
            conditions.append("lower(email) LIKE %s ESCAPE '\\'")
            params.append(like_pattern(search.lower()))
        if after is not None:
            conditions.append("(created_at, id) < (%s, %s)")
            params.extend(keyset_position(after))
        where = ("WHERE " + " AND ".join(conditions)) if conditions else ""
        rows = self.auth_db.fetchall(
            f"SELECT {ACCOUNT_COLUMNS} FROM auth.users {where} "
            "ORDER BY created_at DESC, id DESC LIMIT %s",
            (*params, limit + 1),
        )
        following = None
        if len(rows) > limit:
            rows = rows[:limit]
            last = rows[-1]
            following = cursors.encode([last["created_at"].isoformat(), str(last["id"])])
        return self._accounts(rows), following

    def get(self, user_id: UUID) -> Account | None:
        row = self.auth_db.fetchone(
            f"SELECT {ACCOUNT_COLUMNS} FROM auth.users WHERE id = %s", (user_id,)
        )
        profile = self._profiles([user_id]).get(user_id)
        if row is not None:
            return self._account(row, profile)
        return Account(user_id, None, profile) if profile is not None else None

    def roles(self, user_id: UUID) -> frozenset[str] | None:
        row = self.auth_db.fetchone("SELECT roles FROM auth.users WHERE id = %s", (user_id,))
        return frozenset(row["roles"]) if row else None

    def set_roles(self, user_id: UUID, roles: frozenset[str]) -> bool:
        return (
            self.auth_db.execute(
                "UPDATE auth.users SET roles = %s, updated_at = now() WHERE id = %s",
                (sorted(roles), user_id),
            )
            == 1
        )

    def set_ban(self, user_id: UUID, seconds: int | None) -> Identity | None:
        until = "NULL" if seconds is None else "now() + make_interval(secs => %s)"
        params = (user_id,) if seconds is None else (seconds, user_id)
        return identities.to_identity(
            self.auth_db.fetchone(
                f"UPDATE auth.users SET banned_until = {until}, updated_at = now() "
                f"WHERE id = %s RETURNING {identities.COLUMNS}",
                params,
            )
        )

    def remove(self, user_id: UUID) -> bool:
        if not self.co_located:
            return remove_in_order(
                user_id,
                lambda i: self.auth_db.execute(DELETE_IDENTITY, (i,)) == 1,
                lambda i: self.roles(i) is not None,
                lambda i: self.app_db.execute(DELETE_PROFILE, (i,)),
            )
        step = "profile_delete"
        try:
            with self.auth_db.transaction() as conn:
                conn.execute(DELETE_PROFILE, (user_id,))
                step = "identity_delete"
                conn.execute(DELETE_IDENTITY, (user_id,))
                step = "commit"
        except DatabaseUnavailable as exc:
            # Only the COMMIT's answer can be lost with the work done: look before answering.
            if exc.sent and step == "commit" and self._gone(user_id):
                return True
            raise
        except StorageError as exc:
            raise DeletionFailed(step, exc.reason, exc.hint) from exc
        return True

    def _gone(self, user_id: UUID) -> bool:
        try:
            return self.roles(user_id) is None
        except DatabaseUnavailable:
            return False
