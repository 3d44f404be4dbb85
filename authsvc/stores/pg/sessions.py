"""Sessions and rotating refresh tokens in Postgres (schema `authsvc`).

Shared by both backends: with Supabase, identities live in Supabase Auth but sessions are
still authsvc's own, in the Postgres at DATABASE_URL.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID, uuid4

from authsvc.stores import RotateOutcome, Rotation
from authsvc.stores.pg.database import Database


class PgSessions:
    """SessionStore in the Postgres that holds the authsvc schema."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def create_session(
        self, user_id: UUID, refresh_hash: bytes, expires_at: datetime, user_agent: str | None
    ) -> UUID:
        session_id = uuid4()
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO authsvc.sessions (id, user_id, user_agent) VALUES (%s, %s, %s)",
                (session_id, user_id, (user_agent or "")[:512] or None),
            )
            conn.execute(
                "INSERT INTO authsvc.refresh_tokens (token_hash, session_id, expires_at) "
                "VALUES (%s, %s, %s)",
                (refresh_hash, session_id, expires_at),
            )
        return session_id

    def rotate_refresh_token(
        self, old_hash: bytes, new_hash: bytes, expires_at: datetime
    ) -> Rotation:
        with self.db.transaction() as conn:
            # Row locks on the token and its session make two presentations of one token
            # serial: the first rotates, the second sees used_at and is treated as reuse.
            row = conn.execute(
                "SELECT rt.session_id, rt.used_at, rt.expires_at < now() AS expired, "
                "       s.user_id, s.revoked_at "
                "FROM authsvc.refresh_tokens rt JOIN authsvc.sessions s ON s.id = rt.session_id "
                "WHERE rt.token_hash = %s FOR UPDATE OF rt, s",
                (old_hash,),
            ).fetchone()
            if row is None:
                return Rotation(RotateOutcome.UNKNOWN)
            session_id, user_id = row["session_id"], row["user_id"]
            if row["used_at"] is not None:
                # A spent token presented again: theft, whatever state the session is in.
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
            conn.execute(
                "UPDATE authsvc.refresh_tokens SET used_at = now() WHERE token_hash = %s",
                (old_hash,),
            )
            conn.execute(
                "INSERT INTO authsvc.refresh_tokens (token_hash, session_id, expires_at) "
                "VALUES (%s, %s, %s)",
                (new_hash, session_id, expires_at),
            )
            conn.execute(
                "UPDATE authsvc.sessions SET refreshed_at = now() WHERE id = %s", (session_id,)
            )
            return Rotation(RotateOutcome.ROTATED, session_id, user_id)

    def session_active(self, session_id: UUID) -> bool:
        row = self.db.fetchone(
            "SELECT 1 AS ok FROM authsvc.sessions WHERE id = %s AND revoked_at IS NULL",
            (session_id,),
        )
        return row is not None

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
