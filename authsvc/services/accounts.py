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

from authsvc.errors import AuthError, DatabaseUnavailable, InternalError
from authsvc.mail import Outgoing
from authsvc.passwords import Hasher
from authsvc.services import links, sessions, signup
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
    # The account lifecycle: where mail goes (off the request path), where its links point,
    # and whether login waits for a confirmed email.
    mail: Outgoing | None = None
    public_url: str = "http://127.0.0.1:8000"
    require_email_confirmation: bool = False


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
    (the client logs in instead of signing up again). With AUTHSVC_REQUIRE_EMAIL_CONFIRMATION
    on, no session is started: the address is confirmed first, then the person logs in.
    """
    replayed = False
    if idempotency_key is not None:
        profile, replayed = signup.run_idempotent(
            ctx.stores, ctx.hasher, data, idempotency_key, ctx.secret
        )
    else:
        profile = signup.run(ctx.stores, ctx.hasher, data)
    if not replayed:
        links.send_verification(ctx, profile.id)  # queued: a mail failure never fails a signup
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
    if ctx.require_email_confirmation:
        return user, None  # no session before the address is confirmed: confirm, then log in
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
    return user, session


def _as_signed_up(profile: Profile) -> User:
    """The user as the signup wrote it, for when it cannot be read back."""
    identity = Identity(profile.id, profile.email, created_at=profile.created_at)
    return User(identity, profile)


def log_in(ctx: Context, email: str, password: str) -> tuple[User, Session]:
    return sessions.login(
        ctx.stores,
        ctx.hasher,
        email,
        password,
        ctx.mint,
        ctx.refresh_ttl,
        ctx.user_agent,
        require_confirmed=ctx.require_email_confirmation,
    )


def refresh(ctx: Context, refresh_token: str) -> Session:
    return sessions.refresh(ctx.stores, refresh_token, ctx.mint, ctx.refresh_ttl)


def log_out(ctx: Context, user_id: UUID, session_id: UUID, scope: str = "local") -> None:
    sessions.logout(ctx.stores, user_id, session_id, scope)


def me(ctx: Context, user_id: UUID) -> User:
    return sessions.me(ctx.stores, user_id)


def update_me(ctx: Context, user_id: UUID, changes: dict[str, Any]) -> User:
    return sessions.update_me(ctx.stores, user_id, changes)
