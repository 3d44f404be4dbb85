"""The use cases, once for every entrypoint: the JSON API and the hosted pages call these.

Each takes a Context (what the rules need, handed in by the entrypoint) and returns plain
values; errors leave as AuthErrors for the entrypoint to render.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from uuid import UUID

from authsvc.errors import (
    AuthError,
    DatabaseUnavailable,
    InternalError,
    InvalidCredentials,
    RefreshTokenReused,
    SignupFailed,
    UserBanned,
)
from authsvc.passwords import Hasher
from authsvc.services import audit, sessions, signup
from authsvc.services.sessions import Minter, Session, User
from authsvc.stores import Identity, Profile, Stores

log = logging.getLogger("authsvc.accounts")

T = TypeVar("T")

# After a whole signup, reading the user back and starting the session are retried this many
# times, this far apart, before the 201 goes out without a session.
AFTER_SIGNUP_ATTEMPTS = 3
AFTER_SIGNUP_PAUSE = 0.2


@dataclass(frozen=True)
class Context:
    stores: Stores
    hasher: Hasher
    mint: Minter
    refresh_ttl: int
    secret: bytes  # keys the idempotency fingerprints
    user_agent: str | None = None
    origin: audit.Origin = audit.Origin()  # who acts, from where: for the audit log


def _retried(what: str, call: Callable[[], T]) -> T:
    """`call()`, retried briefly while storage is unavailable or fails on our side."""
    for attempt in range(1, AFTER_SIGNUP_ATTEMPTS + 1):
        try:
            return call()
        except AuthError as exc:
            if exc.status < 500 or attempt == AFTER_SIGNUP_ATTEMPTS:
                raise
            log.warning(
                f"{what} failed after a whole signup; retrying",
                extra={"error": repr(exc), "attempt": attempt},
            )
            time.sleep(AFTER_SIGNUP_PAUSE)
    raise AssertionError("unreachable")


def sign_up(
    ctx: Context, data: signup.SignupData, idempotency_key: str | None = None
) -> tuple[User, Session | None]:
    """Create the account (the saga) and start its session.

    Once the account is whole the answer is a success: reading it back and starting the session
    are retried briefly, and if the session still cannot be started the caller gets None for it
    (the client logs in instead of signing up again).
    """
    replayed = False
    try:
        if idempotency_key is not None:
            profile, replayed = signup.run_idempotent(
                ctx.stores, ctx.hasher, data, idempotency_key, ctx.secret
            )
        else:
            profile = signup.run(ctx.stores, ctx.hasher, data)
    except SignupFailed as exc:
        audit.record(
            ctx.stores,
            ctx.origin,
            audit.SIGNUP_FAILED,
            step=exc.step,
            reason=exc.reason,
            compensated=exc.details.get("compensated"),
        )
        raise
    try:
        user = _retried("reading the user back", lambda: sessions.load_user(ctx.stores, profile.id))
    except AuthError as exc:
        log.error(
            "could not read back a whole account; answering from the signup",
            extra={"user_id": str(profile.id), "error": repr(exc)},
        )
        user = _as_signed_up(profile)
    if user is None:  # removed between our commit and this read
        raise InternalError("The account was created but could not be read back; log in.")
    try:
        session = _retried(
            "starting the session",
            lambda: sessions.start_session(
                ctx.stores, profile.id, ctx.mint, ctx.refresh_ttl, ctx.user_agent
            ),
        )
    except (DatabaseUnavailable, InternalError) as exc:
        log.error(
            "a whole account got no session; the client is told to log in",
            extra={"user_id": str(profile.id), "error": repr(exc)},
        )
        session = None
    if not replayed:
        audit.record(
            ctx.stores, ctx.origin, audit.SIGNUP, profile.id, session=session is not None
        )
    return user, session


def _as_signed_up(profile: Profile) -> User:
    """The user as the signup wrote it, for when it cannot be read back."""
    identity = Identity(profile.id, profile.email, created_at=profile.created_at)
    return User(identity, profile)


def log_in(ctx: Context, email: str, password: str) -> tuple[User, Session]:
    try:
        user, session = sessions.login(
            ctx.stores, ctx.hasher, email, password, ctx.mint, ctx.refresh_ttl, ctx.user_agent
        )
    except (InvalidCredentials, UserBanned) as exc:
        audit.record(ctx.stores, ctx.origin, audit.LOGIN_FAILED, reason=exc.code.lower())
        raise
    audit.record(
        ctx.stores, ctx.origin, audit.LOGIN, user.identity.id, session_id=session.session_id
    )
    return user, session


def refresh(ctx: Context, refresh_token: str) -> Session:
    try:
        return sessions.refresh(ctx.stores, refresh_token, ctx.mint, ctx.refresh_ttl)
    except RefreshTokenReused:
        audit.record(
            ctx.stores, ctx.origin, audit.REFRESH_REUSED, _token_holder(ctx, refresh_token)
        )
        raise


def _token_holder(ctx: Context, refresh_token: str) -> UUID | None:
    """Whose session a reused refresh token came from, if storage can say."""
    try:
        return ctx.stores.accounts.refresh_token_user(sessions.hash_refresh_token(refresh_token))
    except AuthError:
        return None


def log_out(ctx: Context, user_id: UUID, session_id: UUID, scope: str = "local") -> None:
    sessions.logout(ctx.stores, user_id, session_id, scope)
    audit.record(ctx.stores, ctx.origin, audit.LOGOUT, user_id, scope=scope)


def me(ctx: Context, user_id: UUID) -> User:
    return sessions.me(ctx.stores, user_id)


def update_me(ctx: Context, user_id: UUID, changes: dict[str, Any]) -> User:
    return sessions.update_me(ctx.stores, user_id, changes)
