"""One-time tokens (email verification, password reset) in authsvc.one_time_tokens.

A token is 32 random bytes, URL-safe; only its sha256 is stored. It is spent by one UPDATE that
also checks it is unused and unexpired, so two presentations of one token cannot both succeed.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from typing import Any
from uuid import UUID

from authsvc.stores.pg.database import Database

VERIFICATION = "email_verification"
RESET = "password_reset"

ISSUE = (
    "INSERT INTO authsvc.one_time_tokens (token_hash, user_id, purpose, email, expires_at) "
    "VALUES (%s, %s, %s, %s, now() + make_interval(secs => %s))"
)
RETIRE = (
    "UPDATE authsvc.one_time_tokens SET used_at = now() "
    "WHERE user_id = %s AND purpose = %s AND used_at IS NULL"
)
SPEND = (
    "UPDATE authsvc.one_time_tokens SET used_at = now() "
    "WHERE token_hash = %s AND purpose = %s AND used_at IS NULL AND expires_at > now() "
    "RETURNING user_id, email, used_at"
)
OWNER = (
    "SELECT user_id FROM authsvc.one_time_tokens "
    "WHERE token_hash = %s AND purpose = %s AND used_at IS NULL AND expires_at > now()"
)
UNSPEND = "UPDATE authsvc.one_time_tokens SET used_at = NULL WHERE token_hash = %s AND used_at = %s"
PURGE = "DELETE FROM authsvc.one_time_tokens WHERE expires_at < now() OR used_at IS NOT NULL"


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def new_token() -> tuple[str, bytes]:
    token = secrets.token_urlsafe(32)
    return token, hash_token(token)


class PgTokens:
    """The token table in the Postgres that holds the authsvc schema."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def issue(
        self, user_id: UUID, purpose: str, email: str, ttl_seconds: int, retire_older: bool
    ) -> str:
        token, digest = new_token()
        with self.db.transaction() as conn:
            if retire_older:
                conn.execute(RETIRE, (user_id, purpose))
            conn.execute(ISSUE, (digest, user_id, purpose, email, ttl_seconds))
        return token

    def owner(self, purpose: str, token: str) -> UUID | None:
        row = self.db.fetchone(OWNER, (hash_token(token), purpose))
        return row["user_id"] if row else None

    def spend(self, purpose: str, token: str) -> dict[str, Any] | None:
        """{user_id, email, used_at} of the token, now spent; None when it was not usable."""
        return self.db.fetchone(SPEND, (hash_token(token), purpose))

    def unspend(self, token: str, used_at: datetime) -> None:
        """Make a token spent at `used_at` usable again (what it was spent for failed)."""
        self.db.execute(UNSPEND, (hash_token(token), used_at))

    def purge(self) -> int:
        return self.db.execute(PURGE)
