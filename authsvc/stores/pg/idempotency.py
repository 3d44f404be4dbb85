"""Idempotency-Key claims and first answers, and the periodic jobs' claims, in Postgres
(schema `authsvc`)."""

from __future__ import annotations

import time

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

    def claim(self, key: str, fingerprints: list[str], ttl_seconds: int) -> IdempotentRecord | None:
        """`fingerprints`: the body's, under the current key first, then under previous keys
        (a retry across a key rotation still matches)."""
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            row = self.db.fetchone(
                "INSERT INTO authsvc.idempotency_keys (key, fingerprint, expires_at) "
                "VALUES (%(key)s, %(fp)s, now() + make_interval(secs => %(ttl)s)) "
                "ON CONFLICT (key) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, "
                "    created_at = now(), status = NULL, sealed = NULL, "
                "    expires_at = EXCLUDED.expires_at "
                # Take over an expired key, or a claim whose first request died unanswered.
                "  WHERE authsvc.idempotency_keys.expires_at < now() "
                "     OR (authsvc.idempotency_keys.status IS NULL "
                "         AND authsvc.idempotency_keys.fingerprint = ANY(%(fps)s) "
                "         AND authsvc.idempotency_keys.created_at "
                "             < now() - make_interval(secs => %(abandoned)s)) "
                "RETURNING key",
                {
                    "key": key,
                    "fp": fingerprints[0],
                    "fps": fingerprints,
                    "ttl": ttl_seconds,
                    "abandoned": ABANDONED_SECONDS,
                },
            )
            if row is not None:
                return None
            existing = self.db.read_one(
                "SELECT fingerprint, status, sealed FROM authsvc.idempotency_keys WHERE key = %s",
                (key,),
            )
            if existing is None:
                continue  # released between our two statements: claim again
            record = IdempotentRecord(
                existing["fingerprint"], existing["status"], existing["sealed"]
            )
            if record.fingerprint not in fingerprints or record.status is not None:
                return record
            if time.monotonic() > deadline:
                raise IdempotencyKeyInFlight()
            time.sleep(0.05)

    def finish(self, key: str, status: int, sealed: bytes) -> None:
        self.db.execute(
            "UPDATE authsvc.idempotency_keys SET status = %s, sealed = %s, completed_at = now() "
            "WHERE key = %s",
            (status, sealed, key),
        )

    def release(self, key: str) -> None:
        self.db.execute(
            "DELETE FROM authsvc.idempotency_keys WHERE key = %s AND status IS NULL", (key,)
        )

    def purge(self) -> int:
        return self.db.execute("DELETE FROM authsvc.idempotency_keys WHERE expires_at < now()")


class PgMaintenance:
    """MaintenanceStore: when each periodic job last ran, in authsvc.maintenance."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def claim(self, job: str, interval_seconds: int) -> bool:
        # One statement, so two instances can never both win the same interval.
        row = self.db.fetchone(
            "INSERT INTO authsvc.maintenance (job, last_run) VALUES (%s, now()) "
            "ON CONFLICT (job) DO UPDATE SET last_run = now() "
            "WHERE authsvc.maintenance.last_run < now() - make_interval(secs => %s) "
            "RETURNING job",
            (job, interval_seconds),
        )
        return row is not None
