"""Idempotency-Key claims and first answers in Postgres (schema `authsvc`)."""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from authsvc.errors import IdempotencyKeyInFlight
from authsvc.stores import IdempotentRecord
from authsvc.stores.pg.database import Database

# A claimed key whose first request has not finished after this long is taken to be abandoned
# (its process died); a retry may take it over.
ABANDONED_SECONDS = 60
WAIT_SECONDS = 10.0


class PgIdempotency:
    """IdempotencyStore in the Postgres that holds the authsvc schema."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def claim(self, key: str, fingerprint: str) -> IdempotentRecord | None:
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            row = self.db.fetchone(
                "INSERT INTO authsvc.idempotency_keys (key, fingerprint) VALUES (%s, %s) "
                "ON CONFLICT (key) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, "
                "    created_at = now() "
                # Take over only a claim whose first request died without an answer.
                "  WHERE authsvc.idempotency_keys.status IS NULL "
                "    AND authsvc.idempotency_keys.fingerprint = EXCLUDED.fingerprint "
                "    AND authsvc.idempotency_keys.created_at "
                "        < now() - make_interval(secs => %s) "
                "RETURNING key",
                (key, fingerprint, ABANDONED_SECONDS),
            )
            if row is not None:
                return None
            existing = self.db.fetchone(
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

    def finish(
        self, key: str, status: int, user_id: UUID | None, response: dict[str, Any] | None
    ) -> None:
        self.db.execute(
            "UPDATE authsvc.idempotency_keys SET status = %s, user_id = %s, response = %s, "
            "completed_at = now() WHERE key = %s",
            (status, user_id, Jsonb(response) if response is not None else None, key),
        )

    def release(self, key: str) -> None:
        self.db.execute(
            "DELETE FROM authsvc.idempotency_keys WHERE key = %s AND status IS NULL", (key,)
        )
