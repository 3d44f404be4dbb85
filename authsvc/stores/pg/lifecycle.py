"""The account lifecycle's writes in Postgres (one database or split): upgrades, passwords,
verification and reset links, anonymous accounts.

Identities, sessions and one-time tokens always share the identity database, so spending a
token, changing the password and revoking the sessions are one transaction in every Postgres
layout. Only the upgrade touches the profile database too: one transaction when it is the same
database (TransactionalUpgrade), compensation otherwise (stores/upgrades.py).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from authsvc.errors import DatabaseUnavailable, NotAnonymous
from authsvc.stores import Identity, Outcome, Profile, UpgradeUnit
from authsvc.stores.pg.database import Database
from authsvc.stores.pg.held import HeldTransaction
from authsvc.stores.pg.profiles import COLUMNS as PROFILE_COLUMNS
from authsvc.stores.pg.profiles import to_profile
from authsvc.stores.pg.tokens import RESET, SPEND, VERIFICATION, PgTokens, hash_token
from authsvc.stores.upgrades import CompensatingUpgrade

UPGRADE_IDENTITY = (
    "UPDATE auth.users SET email = %s, password_hash = %s, is_anonymous = false, "
    "email_confirmed_at = NULL, updated_at = now() "
    "WHERE id = %s AND is_anonymous AND signup_state = 'complete'"
)
UPGRADED = "SELECT 1 AS ok FROM auth.users WHERE id = %s AND NOT is_anonymous AND email = %s"
SET_CONTACT = (
    "UPDATE public.users SET email = %s, username = coalesce(%s, username), updated_at = now() "
    f"WHERE id = %s RETURNING {PROFILE_COLUMNS}"
)
RESTORE_CONTACT = (
    "UPDATE public.users SET email = %s, username = %s, updated_at = now() "
    "WHERE id = %s AND email = %s"
)
SET_HASH = (
    "UPDATE auth.users SET password_hash = %s, updated_at = now() "
    "WHERE id = %s AND NOT is_anonymous AND signup_state = 'complete'"
)
RESET_HASH = (
    "UPDATE auth.users SET password_hash = %s, updated_at = now(), email_confirmed_at = "
    "CASE WHEN lower(email) = lower(%s) THEN coalesce(email_confirmed_at, now()) "
    "ELSE email_confirmed_at END WHERE id = %s AND signup_state = 'complete'"
)
REVOKE_ALL = (
    "UPDATE authsvc.sessions SET revoked_at = now(), revoked_reason = %s "
    "WHERE user_id = %s AND revoked_at IS NULL"
)
CONFIRM = """
WITH spent AS (
    UPDATE authsvc.one_time_tokens SET used_at = now()
     WHERE token_hash = %s AND purpose = 'email_verification'
       AND used_at IS NULL AND expires_at > now()
    RETURNING user_id, email)
UPDATE auth.users u SET email_confirmed_at = coalesce(u.email_confirmed_at, now()),
       updated_at = now()
  FROM spent
 WHERE u.id = spent.user_id AND lower(u.email) = lower(spent.email)
RETURNING u.id
"""
# Idle: no sign-in, no session started or refreshed, for the whole period.
IDLE = """
    u.is_anonymous AND u.signup_state = 'complete'
    AND coalesce(u.last_sign_in_at, u.created_at) < now() - make_interval(secs => %(idle)s)
    AND NOT EXISTS (
        SELECT 1 FROM authsvc.sessions s WHERE s.user_id = u.id
           AND coalesce(s.refreshed_at, s.created_at) >= now() - make_interval(secs => %(idle)s))
"""


class PgUpgradeSides:
    """UpgradeSides over two Postgres databases (identities, profiles)."""

    def __init__(self, auth_db: Database, app_db: Database) -> None:
        self.auth_db = auth_db
        self.app_db = app_db

    def profile_contact(self, user_id: UUID) -> tuple[str | None, str | None] | None:
        row = self.app_db.fetchone(
            "SELECT email, username FROM public.users WHERE id = %s", (user_id,)
        )
        return (row["email"], row["username"]) if row else None

    def set_profile_contact(
        self, user_id: UUID, email: str, username: str | None
    ) -> Profile | None:
        return to_profile(self.app_db.fetchone(SET_CONTACT, (email, username, user_id)))

    def restore_profile_contact(
        self, user_id: UUID, email: str | None, username: str | None, written: str
    ) -> None:
        self.app_db.execute(RESTORE_CONTACT, (email, username, user_id, written))

    def upgrade_identity(
        self, user_id: UUID, email: str, password: str, password_hash: str
    ) -> None:
        if self.auth_db.execute(UPGRADE_IDENTITY, (email, password_hash, user_id)) != 1:
            raise NotAnonymous()

    def upgraded(self, user_id: UUID, email: str) -> bool:
        return self.auth_db.fetchone(UPGRADED, (user_id, email)) is not None


class TransactionalUpgrade(HeldTransaction):
    """Both rows in one database: one transaction; compensation is its rollback."""

    def __init__(self, db: Database, user_id: UUID) -> None:
        super().__init__(db)
        self.user_id = user_id
        self._email: str | None = None

    def __enter__(self) -> TransactionalUpgrade:
        self._begin()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self._conn is not None and self._conn.info.transaction_status != 0:  # not idle
            self.compensate()
        self._release()

    def update_profile(self, email: str, username: str | None) -> Profile | None:
        return to_profile(self._run(SET_CONTACT, (email, username, self.user_id)).fetchone())

    def upgrade_identity(self, email: str, password: str, password_hash: str) -> None:
        self._email = email
        if self._run(UPGRADE_IDENTITY, (email, password_hash, self.user_id)).rowcount != 1:
            raise NotAnonymous()

    def complete(self) -> None:
        try:
            self._run("COMMIT", None)
        except DatabaseUnavailable:
            # The COMMIT's reply was lost: read back on another connection.
            if self.db.fetchone(UPGRADED, (self.user_id, self._email)) is None:
                raise

    def compensate(self) -> Outcome:
        self._rollback()
        return Outcome.GONE


class PgLifecycle:
    """LifecycleStore for Postgres; `co_located` when the profiles share the identities' DB."""

    def __init__(self, auth_db: Database, app_db: Database, co_located: bool) -> None:
        self.auth_db = auth_db
        self.app_db = app_db
        self.co_located = co_located
        self.tokens = PgTokens(auth_db)

    def upgrade(self, user_id: UUID) -> UpgradeUnit:
        if self.co_located:
            return TransactionalUpgrade(self.auth_db, user_id)
        return CompensatingUpgrade(PgUpgradeSides(self.auth_db, self.app_db), user_id)

    def change_password(self, user_id: UUID, password: str, password_hash: str) -> bool:
        with self.auth_db.transaction() as conn:
            if conn.execute(SET_HASH, (password_hash, user_id)).rowcount != 1:
                return False
            conn.execute(REVOKE_ALL, ("password_changed", user_id))
        return True

    def issue_verification(self, identity: Identity, ttl_seconds: int) -> str | None:
        if identity.email is None or identity.email_confirmed_at is not None:
            return None
        return self.tokens.issue(identity.id, VERIFICATION, identity.email, ttl_seconds, False)

    def confirm_email(self, token: str) -> UUID | None:
        row = self.auth_db.fetchone(CONFIRM, (hash_token(token),))
        return row["id"] if row else None

    def issue_reset(self, identity: Identity, ttl_seconds: int) -> str:
        assert identity.email is not None
        return self.tokens.issue(identity.id, RESET, identity.email, ttl_seconds, True)

    def reset_owner(self, token: str) -> UUID | None:
        return self.tokens.owner(RESET, token)

    def reset_password(self, token: str, password: str, password_hash: str) -> UUID | None:
        try:
            with self.auth_db.transaction() as conn:
                spent = conn.execute(SPEND, (hash_token(token), RESET)).fetchone()
                if spent is None:
                    return None
                user_id = spent["user_id"]
                params = (password_hash, spent["email"], user_id)
                if conn.execute(RESET_HASH, params).rowcount != 1:
                    raise _Rollback()  # the account is gone (or unfinished): spend nothing
                conn.execute(REVOKE_ALL, ("password_reset", user_id))
        except _Rollback:
            return None
        return user_id

    def idle_anonymous(self, idle_seconds: int, limit: int) -> list[UUID]:
        rows = self.auth_db.fetchall(
            f"SELECT u.id FROM auth.users u WHERE {IDLE} ORDER BY u.created_at LIMIT %(limit)s",
            {"idle": idle_seconds, "limit": limit},
        )
        return [r["id"] for r in rows]

    def remove_anonymous(self, ids: list[UUID], idle_seconds: int) -> list[UUID]:
        # Checked again in the statement that deletes, skipping rows someone holds: an account
        # used (or upgraded) since it was found is kept. Sessions and tokens go by their
        # foreign keys; in one database the profile does too.
        rows = self.auth_db.fetchall(
            "DELETE FROM auth.users WHERE id IN (SELECT u.id FROM auth.users u "
            f"WHERE u.id = ANY(%(ids)s) AND {IDLE} FOR UPDATE SKIP LOCKED) RETURNING id",
            {"ids": ids, "idle": idle_seconds},
        )
        return [r["id"] for r in rows]

    def purge_tokens(self) -> int:
        return self.tokens.purge()


class _Rollback(Exception):
    pass
