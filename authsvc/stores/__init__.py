"""The Store protocol: the storage steps the services are written against, and make_store().

A store is the only code that talks to storage. Each backend (Postgres through psycopg, Supabase
through supabase-py) implements these steps; the services never know which one they hold.
Stores translate their driver's errors into `authsvc.errors` (EmailTaken, UsernameTaken,
DatabaseUnavailable, StorageError(reason)); nothing above a store ever sees a driver exception.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID

if TYPE_CHECKING:
    from authsvc.config import Settings
    from authsvc.passwords import Hasher

log = logging.getLogger("authsvc.stores")

PENDING = "pending"
COMPLETE = "complete"


@dataclass(frozen=True)
class Identity:
    """A row of auth.users (or a Supabase Auth user)."""

    id: UUID
    email: str
    password_hash: str | None = None
    is_anonymous: bool = False
    email_confirmed_at: datetime | None = None
    banned_until: datetime | None = None
    signup_state: str = COMPLETE
    created_at: datetime | None = None


@dataclass(frozen=True)
class NewProfile:
    id: UUID
    email: str
    username: str | None = None
    display_name: str | None = None


@dataclass(frozen=True)
class Profile:
    """A row of public.users."""

    id: UUID
    email: str
    username: str | None
    display_name: str | None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class RotateOutcome(Enum):
    ROTATED = "rotated"
    UNKNOWN = "unknown"
    REUSED = "reused"
    EXPIRED = "expired"
    SESSION_ENDED = "session_ended"


@dataclass(frozen=True)
class Rotation:
    outcome: RotateOutcome
    session_id: UUID | None = None
    user_id: UUID | None = None


@dataclass(frozen=True)
class IdempotentRecord:
    """What a first signup with an Idempotency-Key answered (replayed to retries)."""

    fingerprint: str
    status: int | None
    user_id: UUID | None
    response: dict[str, Any] | None


@dataclass
class Drift:
    """Identities without profiles (past the grace period) and profiles without identities."""

    identities_without_profile: list[UUID] = field(default_factory=list)
    identities_without_profile_count: int = 0
    profiles_without_identity: list[UUID] = field(default_factory=list)
    profiles_without_identity_count: int = 0
    # Pending identities that already have their profile: a signup that stopped before
    # completing. Its client was never told 201, so reconcile removes both rows.
    unfinished_with_profile: list[UUID] = field(default_factory=list)
    unfinished_with_profile_count: int = 0

    @property
    def total(self) -> int:
        return (
            self.identities_without_profile_count
            + self.profiles_without_identity_count
            + self.unfinished_with_profile_count
        )


class SignupUnit(Protocol):
    """One signup's writes. Rollback is the default; `complete()` is the one explicit act."""

    def create_identity(self, email: str, password_hash: str, metadata: dict[str, Any]) -> None:
        """Create the identity for this unit's user id in the pending state."""

    def insert_profile(self, profile: NewProfile) -> Profile | None:
        """INSERT the profile ... RETURNING it; None when no row came back."""

    def complete(self) -> None:
        """Mark the identity complete and make everything durable."""

    def compensate(self) -> bool:
        """Undo whatever this unit wrote; True when no trace is left, False when some remains
        (the pending identity is then the durable record that reconcile finishes)."""


class Store(Protocol):
    backend: str

    # lifecycle
    def open(self) -> None: ...
    def close(self) -> None: ...
    def check(self) -> dict[str, str]:
        """Each database's state: {"database": "ok" | "<why not>"}."""

    # signup saga steps
    def signup(self, user_id: UUID) -> AbstractContextManager[SignupUnit]: ...

    # identities and profiles
    def find_identity_by_email(self, email: str) -> Identity | None: ...
    def get_identity(self, user_id: UUID) -> Identity | None: ...
    def authenticate(self, email: str, password: str) -> Identity | None:
        """The identity when `password` is its password, else None. An unknown email costs the
        same time as a wrong password (Postgres: a dummy argon2 verify; the hash is upgraded
        when its parameters are outdated)."""

    def record_sign_in(self, user_id: UUID) -> None: ...
    def get_profile(self, user_id: UUID) -> Profile | None: ...
    def insert_profile(self, profile: NewProfile) -> Profile | None: ...
    def update_profile(self, user_id: UUID, changes: dict[str, Any]) -> Profile | None: ...

    # sessions and refresh tokens
    def create_session(
        self, user_id: UUID, refresh_hash: bytes, expires_at: datetime, user_agent: str | None
    ) -> UUID: ...
    def rotate_refresh_token(
        self, old_hash: bytes, new_hash: bytes, expires_at: datetime
    ) -> Rotation: ...
    def session_active(self, session_id: UUID) -> bool: ...
    def revoke_session(self, session_id: UUID, reason: str) -> None: ...
    def revoke_user_sessions(self, user_id: UUID, reason: str) -> None: ...

    # idempotency
    def idempotency_claim(self, key: str, fingerprint: str) -> IdempotentRecord | None:
        """Claim `key` for this request (None), or return the first request's record. Waits
        while another request holds the same key."""

    def idempotency_finish(
        self, key: str, status: int, user_id: UUID | None, response: dict[str, Any] | None
    ) -> None: ...
    def idempotency_release(self, key: str) -> None: ...

    # reconcile
    def find_drift(self, grace_seconds: int, id_limit: int = 1000) -> Drift: ...
    def repair_drift(self, grace_seconds: int) -> dict[str, int]: ...

    # schema and diagnosis
    def migrate(self) -> list[str]: ...
    def migration_status(self) -> dict[str, Any]: ...
    def diagnose(self) -> list[tuple[str, bool, str]]:
        """Backend-specific `authsvc doctor` checks: (name, ok, detail with what to do)."""


def recreate_profile(store: Store, user_id: UUID, email: str, meta: Any) -> bool:
    """Give a complete identity (answered 201 once) its missing profile back, with the username
    and display name it signed up with when they are still free. False when nothing was created;
    a row the database refuses is logged and left as drift, so one bad row cannot stop a repair.
    """
    from authsvc.errors import StorageError, UsernameTaken

    meta = meta if isinstance(meta, dict) else {}  # written by another tool: use none of it
    profile = NewProfile(user_id, email, meta.get("username"), meta.get("display_name"))
    try:
        try:
            created = store.insert_profile(profile)
        except UsernameTaken:
            created = store.insert_profile(NewProfile(user_id, email, None, profile.display_name))
    except StorageError as exc:
        if exc.reason != "unique_violation":  # unique: created meanwhile, nothing to do
            log.error(
                "reconcile could not recreate a missing profile",
                extra={"user_id": str(user_id), "reason": exc.reason},
            )
        return False
    return created is not None


def make_store(settings: Settings, hasher: Hasher) -> Store:
    """The store the settings ask for; the only place that names a concrete store."""
    if settings.backend == "supabase":
        from authsvc.stores.supabase import SupabaseStore

        return SupabaseStore(settings, hasher)
    from authsvc.stores.postgres import PostgresStore

    return PostgresStore(settings, hasher)


def chunks(ids: list[UUID], size: int) -> Iterator[list[UUID]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]
