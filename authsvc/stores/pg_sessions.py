"""Sessions, rotating refresh tokens and idempotency keys in Postgres (schema `authsvc`).

Shared by both backends: with Supabase, identities live in Supabase Auth but sessions are
still authsvc's own, in the Postgres at DATABASE_URL.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from psycopg.types.json import Jsonb

from authsvc.errors import IdempotencyKeyInFlight
from authsvc.stores import IdempotentRecord, RotateOutcome, Rotation
from authsvc.stores.pg import Database

# A claimed key whose first request has not finished after this long is taken to be abandoned
# (its process died); a retry may take it over.
IDEMPOTENCY_ABANDONED_SECONDS = 60
IDEMPOTENCY_WAIT_SECONDS = 10.0


class PgSessions:
    """Mixin: needs `self.sessions_db`, a Database holding the authsvc schema."""

    sessions_db: Database

    def create_session(
        self, user_id: UUID, refresh_hash: bytes, expires_at: datetime, user_agent: str | None
    ) -> UUID:
        session_id = uuid4()
        with self.sessions_db.transaction() as conn:
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
        with self.sessions_db.transaction() as conn:
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
        row = self.sessions_db.fetchone(
            "SELECT 1 AS ok FROM authsvc.sessions WHERE id = %s AND revoked_at IS NULL",
            (session_id,),
        )
        return row is not None

    def revoke_session(self, session_id: UUID, reason: str) -> None:
        self.sessions_db.execute(
            "UPDATE authsvc.sessions SET revoked_at = now(), revoked_reason = %s "
            "WHERE id = %s AND revoked_at IS NULL",
            (reason, session_id),
        )

    def revoke_user_sessions(self, user_id: UUID, reason: str) -> None:
        self.sessions_db.execute(
            "UPDATE authsvc.sessions SET revoked_at = now(), revoked_reason = %s "
            "WHERE user_id = %s AND revoked_at IS NULL",
            (reason, user_id),
        )

    # -- idempotency ------------------------------------------------------------------------

    def idempotency_claim(self, key: str, fingerprint: str) -> IdempotentRecord | None:
        deadline = time.monotonic() + IDEMPOTENCY_WAIT_SECONDS
        while True:
            row = self.sessions_db.fetchone(
                "INSERT INTO authsvc.idempotency_keys (key, fingerprint) VALUES (%s, %s) "
                "ON CONFLICT (key) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, "
                "    created_at = now() "
                # Take over only a claim whose first request died without an answer.
                "  WHERE authsvc.idempotency_keys.status IS NULL "
                "    AND authsvc.idempotency_keys.fingerprint = EXCLUDED.fingerprint "
                "    AND authsvc.idempotency_keys.created_at "
                "        < now() - make_interval(secs => %s) "
                "RETURNING key",
                (key, fingerprint, IDEMPOTENCY_ABANDONED_SECONDS),
            )
            if row is not None:
                return None
            existing = self.sessions_db.fetchone(
                "SELECT fingerprint, status, user_id, response FROM authsvc.idempotency_keys "
                "WHERE key = %s",
                (key,),
            )
            if existing is None:
                continue  # released between our two statements: claim again
            record = IdempotentRecord(
                existing["fingerprint"],
                existing["status"],
                existing["user_id"],
                existing["response"],
            )
            if record.fingerprint != fingerprint or record.status is not None:
                return record
            if time.monotonic() > deadline:
                raise IdempotencyKeyInFlight()
            time.sleep(0.05)

    def idempotency_finish(
        self, key: str, status: int, user_id: UUID | None, response: dict[str, Any] | None
    ) -> None:
        self.sessions_db.execute(
            "UPDATE authsvc.idempotency_keys SET status = %s, user_id = %s, response = %s, "
            "completed_at = now() WHERE key = %s",
            (status, user_id, Jsonb(response) if response is not None else None, key),
        )

    def idempotency_release(self, key: str) -> None:
        self.sessions_db.execute(
            "DELETE FROM authsvc.idempotency_keys WHERE key = %s AND status IS NULL", (key,)
        )
