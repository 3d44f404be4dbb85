"""Sessions and rotating refresh tokens in Postgres (schema `authsvc`).

Shared by both backends: with Supabase, identities live in Supabase Auth but sessions are
still authsvc's own, in the Postgres at DATABASE_URL. Where the identities share this database
(the Postgres backend, one database or split: sessions live with the identities), a session's
check reads the user's ban in the same statement.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from uuid import UUID, uuid4

from psycopg.rows import tuple_row

from authsvc.stores import RotateOutcome, Rotation, SessionCheck
from authsvc.stores.pg import identities, profiles
from authsvc.stores.pg.database import Database

_IDENTITY = identities.COLUMNS.split(", ")
_PROFILE = profiles.COLUMNS.split(", ")
# Deletes run in batches this size, so a purge of millions of rows never holds a long lock.
PURGE_BATCH = 10000

CREATE = """
WITH session AS (
    INSERT INTO authsvc.sessions (id, user_id, user_agent) VALUES (%(sid)s, %(uid)s, %(ua)s)
    RETURNING id
)
INSERT INTO authsvc.refresh_tokens (token_hash, session_id, expires_at)
SELECT %(hash)s, id, %(expires)s FROM session
"""
# A login's session, only while the password it checked is still the identity's (the UPDATE
# waits for a password change or reset in flight, then sees its new hash and makes nothing),
# and its sign-in recorded, in one statement.
CREATE_SIGNED_IN = """
WITH signed_in AS (
    UPDATE auth.users SET last_sign_in_at = now()
     WHERE id = %(uid)s AND password_hash = %(checked)s
    RETURNING id
), session AS (
    INSERT INTO authsvc.sessions (id, user_id, user_agent)
    SELECT %(sid)s, id, %(ua)s FROM signed_in
    RETURNING id
)
INSERT INTO authsvc.refresh_tokens (token_hash, session_id, expires_at)
SELECT %(hash)s, id, %(expires)s FROM session
"""


class PgSessions:
    """SessionStore in the Postgres that holds the authsvc schema; `bans_known` when auth.users
    is in the same database, `profiles_here` when public.users is too (one database): then a
    session's check reads the whole user in the same statement."""

    def __init__(self, db: Database, bans_known: bool, profiles_here: bool = False) -> None:
        self.db = db
        self.bans_known = bans_known
        self.profiles_here = profiles_here and bans_known
        ban = "u.banned_until" if bans_known else "NULL::timestamptz"
        join = "LEFT JOIN auth.users u ON u.id = s.user_id" if bans_known else ""
        user = ""
        if bans_known:
            user += "".join(f", u.{c}" for c in _IDENTITY)
        if self.profiles_here:
            user += "".join(f", p.{c}" for c in _PROFILE)
            join += " LEFT JOIN public.users p ON p.id = s.user_id"
        self._check = (
            f"SELECT s.user_id, s.revoked_at IS NULL AS active, {ban} AS banned_until{user} "
            f"FROM authsvc.sessions s {join} WHERE s.id = %s"
        )
        # Where the user's columns sit in the check's rows (read as tuples: every
        # authenticated call reads one, and dicts cost more to build and to split).
        identity_end = 3 + len(_IDENTITY) if bans_known else 3
        self._identity_at = slice(3, identity_end)
        self._profile_at = slice(identity_end, identity_end + len(_PROFILE))
        self._lock_token = (
            "SELECT rt.session_id, rt.used_at, rt.expires_at < now() AS expired, "
            "       rt.used_at > now() - make_interval(secs => %s) AS just_used, "
            f"      s.user_id, s.revoked_at, {ban} AS banned_until "
            "FROM authsvc.refresh_tokens rt JOIN authsvc.sessions s ON s.id = rt.session_id "
            f"{join} WHERE rt.token_hash = %s FOR UPDATE OF rt, s"
        )

    def create_session(
        self,
        user_id: UUID,
        refresh_hash: bytes,
        expires_at: datetime,
        user_agent: str | None,
        password_hash: str | None = None,
    ) -> UUID | None:
        session_id = uuid4()
        ua = (user_agent or "")[:512] or None
        # One statement: the session and its first refresh token exist together or not at all.
        params = {
            "sid": session_id,
            "uid": user_id,
            "ua": ua,
            "hash": refresh_hash,
            "expires": expires_at,
        }
        if password_hash is None or not self.bans_known:
            self.db.execute(CREATE, params)
            return session_id
        made = self.db.execute(CREATE_SIGNED_IN, {**params, "checked": password_hash})
        return session_id if made == 1 else None

    def rotate_refresh_token(
        self,
        old_hash: bytes,
        new_hash: bytes,
        expires_at: datetime,
        reuse_interval: int,
        vet: Callable[[UUID, datetime | None], None],
    ) -> Rotation:
        """Spend `old_hash` for a new token in the same session. `vet(user_id, banned_until)`
        runs with the rows locked, before anything is written; what it raises aborts it all."""
        with self.db.transaction() as conn:
            # Row locks on the token and its session make two presentations of one token
            # serial: the first rotates; the second sees used_at.
            row = conn.execute(self._lock_token, (reuse_interval, old_hash)).fetchone()
            if row is None:
                return Rotation(RotateOutcome.UNKNOWN)
            session_id, user_id = row["session_id"], row["user_id"]
            if row["used_at"] is not None and not row["just_used"]:
                # A spent token presented again after the reuse interval: theft. (Within it,
                # a spent token of a session that has ended is answered as revoked, below.)
                conn.execute(
                    "UPDATE authsvc.sessions SET revoked_at = now(), "
                    "revoked_reason = 'refresh_token_reused' WHERE id = %s AND revoked_at IS NULL",
                    (session_id,),
                )
                return Rotation(RotateOutcome.REUSED, session_id, user_id)
            if row["revoked_at"] is not None:
                return Rotation(RotateOutcome.SESSION_ENDED, session_id, user_id)
            if row["expired"]:
                return Rotation(RotateOutcome.EXPIRED, session_id, user_id)
            vet(user_id, row["banned_until"])
            # The old token spent (unless it was already: within the reuse interval, for
            # parallel tabs or a retried request, a spent token gets another new token in the
            # same session, and nothing is revoked) and the new one written, in one statement.
            conn.execute(
                "WITH spent AS (UPDATE authsvc.refresh_tokens SET used_at = now() "
                "WHERE token_hash = %s AND used_at IS NULL), "
                "token AS (INSERT INTO authsvc.refresh_tokens "
                "(token_hash, session_id, expires_at) VALUES (%s, %s, %s)) "
                "UPDATE authsvc.sessions SET refreshed_at = now() WHERE id = %s",
                (old_hash, new_hash, session_id, expires_at, session_id),
            )
            return Rotation(RotateOutcome.ROTATED, session_id, user_id)

    def check(self, session_id: UUID) -> SessionCheck | None:
        rows = self.db.read(self._check, (session_id,), row_factory=tuple_row)
        if not rows:
            return None
        row = rows[0]
        identity = profile = None
        if self.bans_known and row[3] is not None:  # u.id: the identity exists
            columns = zip(_IDENTITY, row[self._identity_at], strict=True)
            identity = identities.to_identity(dict(columns))
        if self.profiles_here and row[self._profile_at.start] is not None:  # p.id
            profile = profiles.to_profile(dict(zip(_PROFILE, row[self._profile_at], strict=True)))
        user_id, active, banned_until = row[:3]
        return SessionCheck(user_id, active, banned_until, self.bans_known, identity, profile)

    def revoke_session(self, session_id: UUID, reason: str) -> None:
        self.db.execute(
            "UPDATE authsvc.sessions SET revoked_at = now(), revoked_reason = %s "
            "WHERE id = %s AND revoked_at IS NULL",
            (reason, session_id),
        )

    def revoke_user_sessions(self, user_id: UUID, reason: str) -> None:
        self.db.execute(
            "UPDATE authsvc.sessions SET revoked_at = now(), revoked_reason = %s "
            "WHERE user_id = %s AND revoked_at IS NULL",
            (reason, user_id),
        )

    def purge(self, keep_spent_seconds: int) -> dict[str, int]:
        """Delete what can never be used again: refresh tokens expired, or spent longer ago
        than `keep_spent_seconds` (until then a spent token presented again is still caught as
        reuse), and sessions revoked that long ago or left with no token at all."""
        tokens = self._delete_batches(
            "DELETE FROM authsvc.refresh_tokens WHERE ctid = ANY(ARRAY("
            "SELECT ctid FROM authsvc.refresh_tokens "
            "WHERE used_at < now() - make_interval(secs => %s) OR expires_at < now() "
            "LIMIT %s))",
            (keep_spent_seconds,),
        )
        sessions = self._delete_batches(
            "DELETE FROM authsvc.sessions WHERE ctid = ANY(ARRAY("
            "SELECT s.ctid FROM authsvc.sessions s "
            "WHERE s.revoked_at < now() - make_interval(secs => %s) "
            "OR (coalesce(s.refreshed_at, s.created_at) < now() - make_interval(secs => %s) "
            "    AND NOT EXISTS (SELECT 1 FROM authsvc.refresh_tokens rt "
            "                    WHERE rt.session_id = s.id)) "
            "LIMIT %s))",
            (keep_spent_seconds, keep_spent_seconds),
        )
        return {"refresh_tokens": tokens, "sessions": sessions}

    def _delete_batches(self, query: str, params: tuple[object, ...]) -> int:
        total = 0
        while True:
            deleted = self.db.execute(query, (*params, PURGE_BATCH))
            total += deleted
            if deleted < PURGE_BATCH:
                return total
