"""The ports: what the services need from storage, by what varies (docs/architecture.md)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from authsvc.stores.rows import (
    Account,
    AuditEvent,
    IdempotentRecord,
    Identity,
    NewProfile,
    Outcome,
    Profile,
    Rotation,
    SessionCheck,
)


class IdentityStore(Protocol):
    """Identities: who can sign in."""

    def create(
        self, user_id: UUID, email: str, password_hash: str | None, signup_profile: dict[str, Any]
    ) -> None:
        """Insert the identity in the pending state; StorageError(no_row_written) when the
        database silently wrote nothing."""

    def create_anonymous(self, user_id: UUID) -> UUID:
        """Insert an anonymous identity (no email, no password), pending; the id it got (a
        backend that picks ids itself answers another one than `user_id`)."""

    def mark_complete(self, user_id: UUID) -> bool:
        """pending -> complete; False when no pending identity with this id was there."""

    def delete_pending(self, user_id: UUID) -> bool:
        """Remove this identity if it is still pending; True when it was removed."""

    def get(self, user_id: UUID) -> Identity | None: ...
    def find_by_email(self, email: str) -> Identity | None: ...
    def find_with_profile(self, email: str) -> tuple[Identity | None, Profile | None, bool]:
        """find_by_email, with the identity's profile read in the same statement where this
        store's database holds the profiles: (identity, profile or None, True). Elsewhere
        (identity, None, False): the caller reads the profile from the profile store."""

    def get_with_profile(self, user_id: UUID) -> tuple[Identity | None, Profile | None, bool]:
        """get, with the profile, as find_with_profile."""

    def set_password_hash(self, user_id: UUID, new_hash: str, old_hash: str) -> bool:
        """Replace the hash, unless another writer changed it meanwhile: True when replaced."""

    def record_sign_in(self, user_id: UUID) -> None: ...

    # primitives for reconcile
    def scan(self, grace_seconds: int) -> Iterator[list[tuple[str, str, bool]]]:
        """Every identity in id order, in batches of (id as text, signup_state, older than the
        grace period)."""

    def present(self, ids: list[UUID]) -> set[UUID]: ...
    def remove_pending(self, ids: list[UUID], grace_seconds: int) -> tuple[list[UUID], int | None]:
        """Delete those of `ids` still pending and older than the grace period, skipping rows a
        signup in flight holds: the ids removed, and how many profiles went with them where the
        profiles share this store's database (removed in the same statement), else None (the
        caller removes them)."""

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
    def present(self, ids: list[UUID]) -> set[UUID]:
        """Those of `ids` that have a profile."""

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
    def create_anonymous_identity(self) -> UUID:
        """The anonymous variant of create_identity; the id the identity got."""

    def insert_profile(self, profile: NewProfile) -> Profile | None: ...
    def complete(self) -> None:
        """Mark the identity complete and make everything durable. A lost reply is settled by
        reading back: it returns when the account is whole, raises otherwise."""

    def compensate(self) -> Outcome:
        """Undo whatever this unit wrote, then read back where the signup's rows stand."""


class SessionStore(Protocol):
    bans_known: bool  # the identities share this database: checks read the user's ban too

    def create_session(
        self,
        user_id: UUID,
        refresh_hash: bytes,
        expires_at: datetime,
        user_agent: str | None,
        password_hash: str | None = None,
    ) -> UUID | None:
        """A session and its first refresh token; its id. `password_hash` (a login): the hash
        the password was checked against. Where `bans_known`, the session is then made only
        while that is still the identity's hash (None when it is not, or the identity is gone),
        and the sign-in is recorded in the same statement; elsewhere the caller records it."""

    def rotate_refresh_token(
        self,
        old_hash: bytes,
        new_hash: bytes,
        expires_at: datetime,
        reuse_interval: int,
        vet: Callable[[UUID, datetime | None], None],
    ) -> Rotation: ...
    def check(self, session_id: UUID) -> SessionCheck | None:
        """The session, whether it is still open, and (where known) the user's ban."""

    def revoke_session(self, session_id: UUID, reason: str) -> None: ...
    def revoke_user_sessions(self, user_id: UUID, reason: str) -> None: ...
    def purge(self, keep_spent_seconds: int) -> dict[str, int]: ...


class IdempotencyStore(Protocol):
    def claim(self, key: str, fingerprints: list[str], ttl_seconds: int) -> IdempotentRecord | None:
        """Claim `key` for this request (None), or return the first request's record. Waits
        while another request holds the same key; an expired key is claimed afresh.
        `fingerprints`: the request body's under each signing key, the current one first."""

    def finish(self, key: str, status: int, sealed: bytes) -> None: ...
    def release(self, key: str) -> None: ...
    def purge(self) -> int:
        """Delete expired keys; how many."""


class MaintenanceStore(Protocol):
    def claim(self, job: str, interval_seconds: int) -> bool:
        """True for the one caller, across every instance, that may run `job` now: it last
        ran longer than `interval_seconds` ago (or never)."""


class SchemaAdmin(Protocol):
    def connection_checks(self) -> list[tuple[str, bool, str]]:
        """`authsvc doctor`'s checks of how connections behave (a pooler in front?), made
        before anything else, on connections of their own."""

    def check(self) -> dict[str, str]:
        """Each database's state: {"database": "ok" | "<why not>"}."""

    def migrate(self) -> list[str]: ...
    def align_layout(self) -> list[str]:
        """After `migrate`: what the layout (one database or split) needs beyond the numbered
        migrations, made so; one sentence per change made or problem left (idempotent)."""

    def layout_problems(self) -> list[str]:
        """What stands between the profile database and the layout of today (the failing
        layout checks of `diagnose`), each with what to do; empty when it fits."""

    def migration_status(self) -> dict[str, Any]: ...
    def diagnose(self) -> list[tuple[str, bool, str]]:
        """Backend-specific `authsvc doctor` checks: (name, ok, detail with what to do)."""


# -- the account lifecycle (anonymous accounts, upgrade, mailed links, passwords) ---------------


class UpgradeUnit(Protocol):
    """Giving an anonymous account its email and password: the profile first, then the
    identity, whose update is the one act that makes the upgrade happen. One database: one
    transaction. Otherwise compensation puts the profile's old email and username back."""

    def __enter__(self) -> UpgradeUnit: ...
    def __exit__(self, *exc_info: Any) -> None: ...
    def update_profile(self, email: str, username: str | None) -> Profile | None:
        """Set the profile's email (and username, when given); the row, or None."""

    def upgrade_identity(self, email: str, password: str, password_hash: str) -> None:
        """Give the anonymous identity the email and password; NotAnonymous when it is not
        (or no longer) anonymous, EmailTaken when another identity holds the email."""

    def complete(self) -> None: ...
    def compensate(self) -> Outcome:
        """Undo the profile's change; GONE when nothing of the upgrade remains."""


class LifecycleStore(Protocol):
    """The writes of the account lifecycle, per backend. Links are single use: a token is
    spent by one atomic write, and only its hash is stored (Supabase's verification links are
    Supabase Auth's own, and so are their tokens)."""

    def upgrade(self, user_id: UUID) -> UpgradeUnit: ...
    def change_password(self, user_id: UUID, password: str, password_hash: str) -> bool:
        """Set the password of a (non-anonymous) account and revoke every session of it;
        False when there is no such account."""

    def issue_verification(self, identity: Identity, ttl_seconds: int) -> str | None:
        """A token confirming the identity's current email; None when it is confirmed."""

    def confirm_email(self, token: str) -> UUID | None:
        """Spend a verification token and mark the address it was sent to confirmed; the user
        id, or None when the token is unknown, used, expired or for an address changed since."""

    def issue_reset(self, identity: Identity, ttl_seconds: int) -> str:
        """A password reset token; older unused ones of the same account stop working."""

    def reset_owner(self, token: str) -> UUID | None:
        """Whose account a usable reset token is for (nothing is spent)."""

    def reset_password(self, token: str, password: str, password_hash: str) -> UUID | None:
        """Spend a reset token: set the password, confirm the address the link was sent to,
        revoke every session; the user id, or None when the token is not usable."""

    def idle_anonymous(self, idle_seconds: int, limit: int) -> list[UUID]:
        """Anonymous accounts with no sign-in and no session activity for `idle_seconds`."""

    def remove_anonymous(self, ids: list[UUID], idle_seconds: int) -> list[UUID]:
        """Remove the identities of those of `ids` still anonymous and idle (their sessions and
        tokens with them; in one database their profiles too); the ids removed."""

    def purge_tokens(self) -> int:
        """Delete spent and expired one-time tokens; how many."""


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
