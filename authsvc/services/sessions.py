"""Login, refresh rotation with reuse detection, logout (local and global), and the profile."""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from authsvc.errors import (
    AccountGone,
    EmailNotConfirmed,
    InvalidCredentials,
    Reason,
    RefreshTokenReused,
    StorageError,
    TokenExpired,
    TokenInvalid,
    TokenRevoked,
    UserBanned,
)
from authsvc.passwords import Hasher
from authsvc.services.reconcile import restore_profile
from authsvc.stores import COMPLETE, Identity, Profile, RotateOutcome, SessionCheck, Stores

log = logging.getLogger("authsvc.sessions")

# mint(user_id, session_id) -> (access_token, expires_in_seconds); provided by the web layer.
Minter = Callable[[UUID, UUID], tuple[str, int]]


@dataclass(frozen=True)
class User:
    """What the API calls a user: the identity and its profile, together."""

    identity: Identity
    profile: Profile

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": str(self.identity.id),
            "email": self.identity.email,
            "username": self.profile.username,
            "display_name": self.profile.display_name,
            "email_confirmed": self.identity.email_confirmed_at is not None,
            "is_anonymous": self.identity.is_anonymous,
            "created_at": _rfc3339(self.identity.created_at or self.profile.created_at),
        }


@dataclass(frozen=True)
class Session:
    access_token: str
    refresh_token: str
    expires_in: int
    expires_at: int
    session_id: UUID

    def as_dict(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "token_type": "bearer",
            "expires_in": self.expires_in,
            "expires_at": self.expires_at,
        }


def _rfc3339(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def hash_refresh_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _new_refresh_token() -> tuple[str, bytes]:
    token = secrets.token_urlsafe(32)
    return token, hash_refresh_token(token)


def start_session(
    stores: Stores,
    user_id: UUID,
    mint: Minter,
    refresh_ttl: int,
    user_agent: str | None = None,
    password_hash: str | None = None,
) -> Session:
    """A new session. `password_hash` (a login): the hash the password was checked against;
    where the sessions share the identities' database the session is only made while it is
    still the identity's (InvalidCredentials when a password change or reset got there first),
    and the sign-in is recorded in the same statement."""
    refresh, refresh_hash = _new_refresh_token()
    expires = datetime.now(UTC) + timedelta(seconds=refresh_ttl)
    try:
        session_id = stores.sessions.create_session(
            user_id, refresh_hash, expires, user_agent, password_hash
        )
    except StorageError as exc:
        # The session's foreign key refused it: the account was removed since it was read (a
        # DELETE /me or an admin's delete committed in between).
        if exc.reason is not Reason.FOREIGN_KEY_VIOLATION:
            raise
        raise AccountGone() from exc
    if session_id is None:  # the password changed, or the account went, since it was checked
        raise InvalidCredentials()
    access, expires_in = mint(user_id, session_id)
    return Session(access, refresh, expires_in, _epoch() + expires_in, session_id)


def _epoch() -> int:
    return int(datetime.now(UTC).timestamp())


def load_user(stores: Stores, user_id: UUID) -> User | None:
    """The complete user, or None when either half is missing (one read where one database
    holds both)."""
    identity, profile, profile_read = stores.identities.get_with_profile(user_id)
    if identity is None or identity.signup_state != COMPLETE:
        return None
    if not profile_read:
        profile = stores.profiles.get(user_id)
    return User(identity, profile) if profile is not None else None


def authenticate(stores: Stores, hasher: Hasher, email: str, password: str) -> Identity | None:
    """The identity when `password` is its password, else None.

    An unknown email costs the same time as a wrong password (a dummy argon2 verify), and a
    hash made with outdated cost parameters is upgraded now that the plain password is here.
    A backend that checks passwords itself (Supabase Auth) is asked instead.
    """
    if stores.password_check is not None:
        return stores.password_check.check(email, password)
    checked = _check_password(stores, hasher, stores.identities.find_by_email(email), password)
    return checked[0] if checked else None


def _check_password(
    stores: Stores, hasher: Hasher, identity: Identity | None, password: str
) -> tuple[Identity, str] | None:
    """The identity and its password hash now, when `password` is its password."""
    stored = identity.password_hash if identity else None
    if not hasher.verify(stored, password):  # a dummy hash when there is no user
        return None
    assert identity is not None and stored is not None
    if hasher.needs_rehash(stored):
        upgraded = hasher.hash(password)
        if stores.identities.set_password_hash(identity.id, upgraded, stored):
            return identity, upgraded
        # Another writer changed the hash meanwhile: a concurrent login's upgrade of the same
        # password (it verifies), or a password change or reset (it does not: refused).
        current = stores.identities.get(identity.id)
        now = current.password_hash if current else None
        if now is None or not hasher.verify(now, password):
            return None
        return current, now
    return identity, stored


def login(
    stores: Stores,
    hasher: Hasher,
    email: str,
    password: str,
    mint: Minter,
    refresh_ttl: int,
    user_agent: str | None = None,
    require_confirmed: bool = False,
) -> tuple[User, Session]:
    """Check the password and open a session, for complete users only (and, when
    `require_confirmed`, only once the email is confirmed: said only after a correct password).

    An unknown email and a wrong password take the same path and time, and answer the same
    InvalidCredentials.
    """
    profile: Profile | None = None
    profile_read = False
    if stores.password_check is not None:
        identity = stores.password_check.check(email, password)
        stored = None
    else:
        # Where one database holds both halves, the profile comes in the same statement.
        found, profile, profile_read = stores.identities.find_with_profile(email)
        checked = _check_password(stores, hasher, found, password)
        identity, stored = checked if checked else (None, None)
    if identity is None:
        raise InvalidCredentials()
    _refuse_if_banned(identity.banned_until)
    if require_confirmed and identity.email_confirmed_at is None:
        raise EmailNotConfirmed()
    user = _whole_user(stores, identity, profile, profile_read)
    if user is None:
        # Half a user never gets a session. To the client the account does not exist (yet):
        # its signup was never answered with success.
        raise InvalidCredentials()
    if not stores.sessions.bans_known:  # else the session's statement records the sign-in
        stores.identities.record_sign_in(identity.id)
    session = start_session(stores, identity.id, mint, refresh_ttl, user_agent, stored)
    log.info("login", extra={"user_id": str(identity.id), "session_id": str(session.session_id)})
    return user, session


def _whole_user(
    stores: Stores, identity: Identity, profile: Profile | None, profile_read: bool
) -> User | None:
    """The user with both halves, or None for half a user.

    A pending identity never gets a session: its signup was never answered 201 (it failed, or
    its process died), so nobody was promised this account; `authsvc reconcile --repair`
    removes it. A complete identity whose profile went missing since (deleted by hand, lost in
    a split deployment) was promised: it gets its profile back rather than being locked out.
    """
    if identity.signup_state != COMPLETE:
        return None
    if not profile_read:
        profile = stores.profiles.get(identity.id)
    if profile is None:
        profile = restore_profile(stores, identity)
        if profile is None:
            return None
        log.warning("login recreated a missing profile", extra={"user_id": str(identity.id)})
    return User(identity, profile)


def _refuse_if_banned(banned_until: datetime | None) -> None:
    if banned_until is not None and banned_until > datetime.now(UTC):
        raise UserBanned(details={"banned_until": _rfc3339(banned_until)})


def check_access(stores: Stores, session_id: UUID, user_id: UUID) -> SessionCheck:
    """An open session of `user_id` whose user is not banned (with the user's rows when storage
    read them in the same statement); every authenticated call goes through this. TokenRevoked
    for an ended session, TokenInvalid for a session of another user (a token naming one user
    and another's session was not minted here), UserBanned for a ban."""
    check = stores.sessions.check(session_id)
    if check is None or not check.active:
        raise TokenRevoked()
    if check.user_id != user_id:
        raise TokenInvalid()
    banned_until = check.banned_until
    if not check.bans_known:  # the identities live elsewhere (Supabase Auth): ask them
        identity = stores.identities.get(check.user_id)
        if identity is None:
            raise TokenRevoked("The account this token belongs to no longer exists.")
        banned_until = identity.banned_until
    _refuse_if_banned(banned_until)
    return check


def refresh(
    stores: Stores, refresh_token: str, mint: Minter, refresh_ttl: int, reuse_interval: int = 0
) -> Session:
    """Rotate: the presented token is spent, a new one is issued. A spent token presented
    again within `reuse_interval` seconds gets another new token (parallel tabs, a retry);
    later it is theft, and the whole session is revoked. A banned user gets nothing."""
    new_token, new_hash = _new_refresh_token()
    expires = datetime.now(UTC) + timedelta(seconds=refresh_ttl)

    def vet(user_id: UUID, banned_until: datetime | None) -> None:
        if not stores.sessions.bans_known:
            identity = stores.identities.get(user_id)
            banned_until = identity.banned_until if identity is not None else None
        _refuse_if_banned(banned_until)

    rotation = stores.sessions.rotate_refresh_token(
        hash_refresh_token(refresh_token), new_hash, expires, reuse_interval, vet
    )
    if rotation.outcome is RotateOutcome.UNKNOWN:
        raise TokenInvalid()
    if rotation.outcome is RotateOutcome.REUSED:
        log.warning(
            "refresh token reused; session revoked",
            extra={"session_id": str(rotation.session_id), "user_id": str(rotation.user_id)},
        )
        raise RefreshTokenReused()
    if rotation.outcome is RotateOutcome.EXPIRED:
        raise TokenExpired()
    if rotation.outcome is RotateOutcome.SESSION_ENDED:
        raise TokenRevoked()
    assert rotation.user_id is not None and rotation.session_id is not None
    if load_user(stores, rotation.user_id) is None:
        stores.sessions.revoke_session(rotation.session_id, "user_gone")
        raise TokenRevoked()
    access, expires_in = mint(rotation.user_id, rotation.session_id)
    return Session(access, new_token, expires_in, _epoch() + expires_in, rotation.session_id)


def logout(stores: Stores, user_id: UUID, session_id: UUID, scope: str = "local") -> None:
    if scope == "global":
        stores.sessions.revoke_user_sessions(user_id, "logout_global")
    else:
        stores.sessions.revoke_session(session_id, "logout")
    log.info("logout", extra={"user_id": str(user_id), "scope": scope})


def me(stores: Stores, user_id: UUID, seen: SessionCheck | None = None) -> User:
    """The whole user; `seen` is this request's session check, whose rows (when storage read
    them with the session) need not be read again."""
    identity = seen.identity if seen is not None and seen.user_id == user_id else None
    if identity is not None and identity.signup_state == COMPLETE:
        profile = seen.profile if seen is not None else None  # noqa: SIM108 - both from `seen`
        if profile is None:
            profile = stores.profiles.get(user_id)
        user = User(identity, profile) if profile is not None else None
    else:
        user = load_user(stores, user_id)
    if user is None:
        raise TokenRevoked("The account this token belongs to no longer exists.")
    return user


def update_me(stores: Stores, user_id: UUID, changes: dict[str, Any]) -> User:
    user = me(stores, user_id)
    if not changes:
        return user
    profile = stores.profiles.update(user_id, changes)
    if profile is None:
        raise TokenRevoked("The account this token belongs to no longer exists.")
    return User(user.identity, profile)
