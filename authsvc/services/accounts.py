"""The use cases, once for every entrypoint: the JSON API and the hosted pages call these.

Each takes a Context (what the rules need, handed in by the entrypoint) and returns plain
values; errors leave as AuthErrors for the entrypoint to render.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from uuid import UUID

from authsvc.errors import (
    AccountGone,
    AuthError,
    DatabaseUnavailable,
    IdempotencyKeyReused,
    InternalError,
    InvalidCredentials,
    RateLimited,
    RefreshTokenReused,
    SignupFailed,
    UserBanned,
)
from authsvc.mail import Outgoing
from authsvc.passwords import Hasher
from authsvc.sealing import Sealer
from authsvc.services import audit, links, sessions, signup
from authsvc.services.sessions import Minter, Session, User
from authsvc.stores import Identity, Profile, SessionCheck, Stores

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
    # The signing secrets, current first: they key the idempotency fingerprints.
    secrets: tuple[bytes, ...]
    sealer: Sealer  # seals idempotent answers at rest
    idempotency_ttl: int = 24 * 3600
    refresh_reuse_interval: int = 0
    user_agent: str | None = None
    # The account lifecycle: where mail goes (off the request path), where its links point,
    # and whether login waits for a confirmed email.
    mail: Outgoing | None = None
    public_url: str = "http://127.0.0.1:8000"
    require_email_confirmation: bool = False
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
) -> tuple[dict[str, Any], bool]:
    """Create the account and start its session: ({"user": ..., "session": ... or None},
    whether this is a replay of an earlier answer).

    With an Idempotency-Key, a retry with the same body gets the first answer itself (its
    status and body, the session's tokens included) and creates nothing; another body is
    refused. Answers of 5xx and 429 are not kept: a retry runs again.
    """
    if idempotency_key is None:
        return _answer(*_sign_up(ctx, data)), False
    prints = [signup.fingerprint(data, secret) for secret in ctx.secrets]
    record = ctx.stores.idempotency.claim(idempotency_key, prints, ctx.idempotency_ttl)
    if record is not None:
        if record.fingerprint not in prints:
            raise IdempotencyKeyReused()
        return _replay(ctx, idempotency_key, record.status, record.sealed), True
    try:
        answer = _answer(*_sign_up(ctx, data))
    except AuthError as exc:
        if exc.status < 500 and not isinstance(exc, RateLimited):
            body = {"error": {"code": exc.code, "message": exc.message, "details": exc.details}}
            _keep(ctx, idempotency_key, exc.status, body)
        else:
            _bookkeeping(ctx.stores.idempotency.release, idempotency_key)
        raise
    except BaseException:
        _bookkeeping(ctx.stores.idempotency.release, idempotency_key)
        raise
    ctx.stores.idempotency.finish(idempotency_key, 201, _seal(ctx, idempotency_key, answer))
    return answer, False


def _answer(user: User, session: Session | None) -> dict[str, Any]:
    return {"user": user.as_dict(), "session": session.as_dict() if session else None}


def _seal(ctx: Context, key: str, body: dict[str, Any]) -> bytes:
    return ctx.sealer.seal(json.dumps(body).encode(), key.encode())


def _keep(ctx: Context, key: str, status: int, body: dict[str, Any]) -> None:
    _bookkeeping(ctx.stores.idempotency.finish, key, status, _seal(ctx, key, body))


def _replay(ctx: Context, key: str, status: int | None, sealed: bytes | None) -> dict[str, Any]:
    """The first answer again: its body as it was, or its error raised as it was."""
    opened = ctx.sealer.open(sealed or b"", key.encode())
    if status is None or opened is None:
        # Sealed under a key no longer configured: the answer cannot be given back.
        raise InternalError("The first answer to this Idempotency-Key cannot be replayed.")
    body = json.loads(opened)
    if "error" in body:
        raise AuthError.restore(body["error"])
    return body


def _bookkeeping(step: Callable[..., Any], *args: Any) -> None:
    """Record a failed signup's outcome on its key, without letting a failure to record it
    (the database went away) replace the error the client must see. An unrecorded key stays
    claimed; a retry may take it over once it counts as abandoned."""
    try:
        step(*args)
    except AuthError as exc:
        log.warning("idempotency key not updated", extra={"error": repr(exc)})


def _sign_up(ctx: Context, data: signup.SignupData) -> tuple[User, Session | None]:
    """The saga, then the user read back and a session started. Once the account is whole
    the answer is a success: the reads are retried briefly, and a session that still cannot
    start is None (the client logs in instead of signing up again). With
    AUTHSVC_REQUIRE_EMAIL_CONFIRMATION on, no session is started: the address is confirmed
    first, then the person logs in."""
    try:
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
        # No session before the address is confirmed: confirm, then log in.
        audit.record(ctx.stores, ctx.origin, audit.SIGNUP, profile.id, session=False)
        return user, None
    try:
        session = _retried(
            "starting the session",
            lambda: sessions.start_session(
                ctx.stores, profile.id, ctx.mint, ctx.refresh_ttl, ctx.user_agent
            ),
        )
    except (DatabaseUnavailable, InternalError, AccountGone) as exc:
        log.error(
            "a whole account got no session; the client is told to log in",
            extra={"user_id": str(profile.id), "error": repr(exc)},
        )
        session = None
    audit.record(ctx.stores, ctx.origin, audit.SIGNUP, profile.id, session=session is not None)
    return user, session


def _as_signed_up(profile: Profile) -> User:
    """The user as the signup wrote it, for when it cannot be read back."""
    identity = Identity(profile.id, profile.email, created_at=profile.created_at)
    return User(identity, profile)


def log_in(ctx: Context, email: str, password: str) -> tuple[User, Session]:
    try:
        user, session = sessions.login(
            ctx.stores,
            ctx.hasher,
            email,
            password,
            ctx.mint,
            ctx.refresh_ttl,
            ctx.user_agent,
            require_confirmed=ctx.require_email_confirmation,
        )
    except (InvalidCredentials, UserBanned) as exc:
        audit.record(ctx.stores, ctx.origin, audit.LOGIN_FAILED, reason=exc.code.lower())
        raise
    except AccountGone as exc:
        # Closed while this login checked its password: as for an account that does not exist.
        audit.record(ctx.stores, ctx.origin, audit.LOGIN_FAILED, reason="invalid_credentials")
        raise InvalidCredentials() from exc
    audit.record(
        ctx.stores, ctx.origin, audit.LOGIN, user.identity.id, session_id=session.session_id
    )
    return user, session


def refresh(ctx: Context, refresh_token: str) -> Session:
    try:
        return sessions.refresh(
            ctx.stores, refresh_token, ctx.mint, ctx.refresh_ttl, ctx.refresh_reuse_interval
        )
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


def check_access(ctx: Context, session_id: UUID, user_id: UUID) -> SessionCheck:
    return sessions.check_access(ctx.stores, session_id, user_id)


def log_out(ctx: Context, user_id: UUID, session_id: UUID, scope: str = "local") -> None:
    sessions.logout(ctx.stores, user_id, session_id, scope)
    audit.record(ctx.stores, ctx.origin, audit.LOGOUT, user_id, scope=scope)


def me(stores: Stores, user_id: UUID, seen: SessionCheck | None = None) -> User:
    """The whole user (reads only: no Context to build for the most frequent call)."""
    return sessions.me(stores, user_id, seen)


def update_me(ctx: Context, user_id: UUID, changes: dict[str, Any]) -> User:
    return sessions.update_me(ctx.stores, user_id, changes)
