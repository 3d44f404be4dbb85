"""The ports the services are written against, the rows they pass around, and make_stores().

Ports by what varies (docs/architecture.md has the table): identities and profiles per backend
(Postgres, Supabase), sessions and idempotency always authsvc's own Postgres, schema
administration on its own. A signup's writes go through a SignupUnit: a transaction in one
database (pg/signup.py), compensating deletes otherwise (units.py). Stores translate their
driver's errors into `authsvc.errors`; nothing above a store ever sees a driver exception.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID

if TYPE_CHECKING:
    from authsvc.config import Settings

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
    # The profile fields the signup asked for, as only authsvc writes them (never metadata a
    # user can edit): what a lost profile is recreated from.
    signup_profile: dict[str, Any] = field(default_factory=dict, compare=False)


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


class Outcome(Enum):
    """Where a signup's rows stand after a failure, as read back from storage."""

    GONE = "gone"  # no row of the signup remains: compensated
    REMAINS = "remains"  # some row remains (or nobody could look): not compensated
    WHOLE = "whole"  # the account is complete after all (a lost reply): answer 201


class IdentityStore(Protocol):
    """Identities: who can sign in."""

    def create(
        self, user_id: UUID, email: str, password_hash: str | None, signup_profile: dict[str, Any]
    ) -> None:
        """Insert the identity in the pending state; StorageError(no_row_written) when the
        database silently wrote nothing."""

    def mark_complete(self, user_id: UUID) -> bool:
        """pending -> complete; False when no pending identity with this id was there."""

    def delete_pending(self, user_id: UUID) -> bool:
        """Remove this identity if it is still pending; True when it was removed."""

    def get(self, user_id: UUID) -> Identity | None: ...
    def find_by_email(self, email: str) -> Identity | None: ...
    def set_password_hash(self, user_id: UUID, new_hash: str, old_hash: str) -> None:
        """Replace the hash, unless another writer changed it meanwhile."""

    def record_sign_in(self, user_id: UUID) -> None: ...

    # primitives for reconcile
    def scan(self, grace_seconds: int) -> Iterator[list[tuple[str, str, bool]]]:
        """Every identity in id order, in batches of (id as text, signup_state, older than the
        grace period)."""

    def present(self, ids: list[UUID]) -> set[UUID]: ...
    def remove_pending(self, ids: list[UUID], grace_seconds: int) -> list[UUID]:
        """Delete those of `ids` still pending and older than the grace period, skipping rows a
        signup in flight holds; the ids removed."""

    def signup_profiles(self, ids: list[UUID]) -> list[Identity]:
        """The complete identities among `ids`, with what their signup asked for."""


class ProfileStore(Protocol):
    """Profiles: the application's row of each identity (public.users)."""

    co_located: bool  # True when the profiles share the identities' database (one transaction)

    def insert(self, profile: NewProfile) -> Profile | None:
        """INSERT ... RETURNING; None when no row came back."""

    def get(self, user_id: UUID) -> Profile | None: ...
    def update(self, user_id: UUID, changes: dict[str, Any]) -> Profile | None: ...
    def delete(self, user_id: UUID) -> int: ...
    def delete_many(self, ids: list[UUID]) -> int: ...

    # primitives for reconcile
    def scan(self, grace_seconds: int) -> Iterator[list[tuple[str, bool]]]:
        """Every profile in id order, in batches of (id as text, older than the grace period)."""

    def remove_orphans(self, ids: list[UUID], grace_seconds: int) -> list[UUID]:
        """Delete those of `ids` older than the grace period that have no identity (checked in
        the same statement where the identities are in this database), skipping locked rows."""


class RemotePasswordCheck(Protocol):
    """A backend that checks passwords itself (Supabase Auth)."""

    def check(self, email: str, password: str) -> Identity | None:
        """The identity when `password` is its password; None otherwise."""


class SignupUnit(Protocol):
    """One signup's writes. Rollback is the default; `complete()` is the one explicit act."""

    def __enter__(self) -> SignupUnit: ...
    def __exit__(self, *exc_info: Any) -> None: ...
    def create_identity(
        self, email: str, password_hash: str, signup_profile: dict[str, Any]
    ) -> None: ...
    def insert_profile(self, profile: NewProfile) -> Profile | None: ...
    def complete(self) -> None:
        """Mark the identity complete and make everything durable. A lost reply is settled by
        reading back: it returns when the account is whole, raises otherwise."""

    def compensate(self) -> Outcome:
        """Undo whatever this unit wrote, then read back where the signup's rows stand."""


class SessionStore(Protocol):
    def create_session(
        self, user_id: UUID, refresh_hash: bytes, expires_at: datetime, user_agent: str | None
    ) -> UUID: ...
    def rotate_refresh_token(
        self, old_hash: bytes, new_hash: bytes, expires_at: datetime
    ) -> Rotation: ...
    def session_active(self, session_id: UUID) -> bool: ...
    def revoke_session(self, session_id: UUID, reason: str) -> None: ...
    def revoke_user_sessions(self, user_id: UUID, reason: str) -> None: ...


class IdempotencyStore(Protocol):
    def claim(self, key: str, fingerprint: str) -> IdempotentRecord | None:
        """Claim `key` for this request (None), or return the first request's record. Waits
        while another request holds the same key."""

    def finish(
        self, key: str, status: int, user_id: UUID | None, response: dict[str, Any] | None
    ) -> None: ...
    def release(self, key: str) -> None: ...


class SchemaAdmin(Protocol):
    def check(self) -> dict[str, str]:
        """Each database's state: {"database": "ok" | "<why not>"}."""

    def migrate(self) -> list[str]: ...
    def migration_status(self) -> dict[str, Any]: ...
    def diagnose(self) -> list[tuple[str, bool, str]]:
        """Backend-specific `authsvc doctor` checks: (name, ok, detail with what to do)."""


@dataclass
class Stores:
    """Everything the services need from storage, composed for one backend and layout."""

    backend: str
    identities: IdentityStore
    profiles: ProfileStore
    sessions: SessionStore
    idempotency: IdempotencyStore
    admin: SchemaAdmin
    signup: Callable[[UUID], SignupUnit]
    # Account lifecycle (admin): what operators see and do to accounts, and the audit log.
    accounts: AccountAdmin
    audit: AuditLog
    password_check: RemotePasswordCheck | None = None
    # {database name: pool numbers} of the Postgres pools behind these stores (metrics).
    pool_stats: Callable[[], dict[str, dict[str, int]]] = dict
    _open: list[Callable[[], None]] = field(default_factory=list, repr=False)
    _close: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def open(self) -> None:
        """Open the pools (after a fork, never before)."""
        for opener in self._open:
            opener()

    def close(self) -> None:
        for closer in self._close:
            closer()



# -- account lifecycle (admin): the operator's view of accounts, closing them, the audit log ------

ADMIN_ROLE = "admin"


@dataclass(frozen=True)
class Account:
    """Both halves of one user id as storage holds them (either may be missing), and what only
    authsvc writes about it."""

    id: UUID
    identity: Identity | None
    profile: Profile | None
    roles: frozenset[str] = frozenset()
    last_sign_in_at: datetime | None = None

    @property
    def consistent(self) -> bool:
        """A complete identity with a profile whose id and email match it."""
        identity, profile = self.identity, self.profile
        return (
            identity is not None
            and profile is not None
            and identity.signup_state == COMPLETE
            and profile.id == identity.id
            and profile.email.lower() == identity.email.lower()
        )


class AccountAdmin(Protocol):
    """Accounts as an operator sees and changes them: listing, roles, bans, closing, sessions."""

    def page(
        self, search: str | None, after: str | None, limit: int
    ) -> tuple[list[Account], str | None]:
        """Accounts with an identity, newest first, at most `limit`, whose email contains
        `search` (case-insensitively). `after` and the returned cursor are opaque positions
        (None: from the start / no more); a cursor this store did not make is
        ValidationFailed."""

    def get(self, user_id: UUID) -> Account | None:
        """Both rows of this id; None when neither exists."""

    def roles(self, user_id: UUID) -> frozenset[str] | None:
        """The identity's roles; None when there is no identity."""

    def set_roles(self, user_id: UUID, roles: frozenset[str]) -> bool:
        """Replace the identity's roles; False when there is no identity."""

    def set_ban(self, user_id: UUID, seconds: int | None) -> Identity | None:
        """Ban the identity for `seconds` from now (None: lift the ban); the identity after, or
        None when there is none."""

    def remove(self, user_id: UUID) -> bool:
        """Remove the identity and its profile: in one transaction where they share a database,
        otherwise the identity first (after it no one can sign in) and then the profile. True
        when both are gone; False when the identity is gone but its profile could not be
        removed (`authsvc reconcile --repair` removes it). Raises when the identity remains, and
        then nothing was removed."""

    def revoke_sessions(self, user_id: UUID, reason: str) -> int:
        """End every open session of the user; how many were open."""

    def session_started(self, session_id: UUID) -> datetime | None:
        """When this session began (its login), if it is open."""

    def refresh_token_user(self, token_hash: bytes) -> UUID | None:
        """The user whose session issued the refresh token with this hash."""


@dataclass(frozen=True)
class AuditEvent:
    """One entry of the audit log; never a password, a token or a hash."""

    type: str
    user_id: UUID | None = None
    actor: str = "user"  # user | admin | admin_key | cli | system
    actor_id: UUID | None = None
    request_id: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    id: int | None = None
    at: datetime | None = None


class AuditLog(Protocol):
    """The append-only audit log (always authsvc's own Postgres, with the sessions)."""

    def append(self, event: AuditEvent) -> None:
        """Write one event, failing fast rather than holding up the operation it records."""

    def page(
        self, user_id: UUID | None, event_type: str | None, after: str | None, limit: int
    ) -> tuple[list[AuditEvent], str | None]:
        """Events newest first, optionally of one user and one type; cursors as in
        AccountAdmin.page."""

    def purge(self, keep_days: int) -> int:
        """Remove the events older than `keep_days` days (at least 1); how many went."""


def make_stores(settings: Settings) -> Stores:
    """The stores the settings ask for; the only place that names a backend."""
    if settings.backend == "supabase":
        from authsvc.stores.supabase import make_supabase_stores

        return make_supabase_stores(settings)
    from authsvc.stores.pg import make_postgres_stores

    return make_postgres_stores(settings)
