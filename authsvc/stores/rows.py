"""The rows the ports pass around: identities, profiles, sessions' and idempotency's records,
accounts as operators see them, audit events."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any
from uuid import UUID

PENDING = "pending"
COMPLETE = "complete"


@dataclass(frozen=True)
class Identity:
    """A row of auth.users (or a Supabase Auth user)."""

    id: UUID
    email: str | None  # None only for an anonymous identity
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
    email: str | None
    username: str | None = None
    display_name: str | None = None


@dataclass(frozen=True)
class Profile:
    """A row of public.users."""

    id: UUID
    email: str | None
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
class SessionCheck:
    """A session as an authenticated call sees it. `bans_known` when the sessions' database
    holds the identities, so `banned_until` is the user's (else the caller asks the identity)."""

    user_id: UUID
    active: bool
    banned_until: datetime | None
    bans_known: bool
    # The user's rows, when the sessions' database holds them too (read in the same statement,
    # so GET /me needs no other): None when not held here, or missing.
    identity: Identity | None = None
    profile: Profile | None = None


@dataclass(frozen=True)
class IdempotentRecord:
    """What a first request with an Idempotency-Key answered (replayed to retries): its
    status and its body, sealed; status None while the first request is still running."""

    fingerprint: str
    status: int | None
    sealed: bytes | None


class Outcome(Enum):
    """Where a signup's rows stand after a failure, as read back from storage."""

    GONE = "gone"  # no row of the signup remains: compensated
    REMAINS = "remains"  # some row remains (or nobody could look): not compensated
    WHOLE = "whole"  # the account is complete after all (a lost reply): answer 201


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
        """A complete identity with a profile whose id and email match it (an anonymous
        user's halves have no email, alike)."""
        identity, profile = self.identity, self.profile
        return (
            identity is not None
            and profile is not None
            and identity.signup_state == COMPLETE
            and profile.id == identity.id
            and (profile.email or "").lower() == (identity.email or "").lower()
        )


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
