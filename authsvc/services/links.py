"""Mailed links and passwords: email verification, forgot/reset, and change.

Links carry single-use, expiring tokens; the stores keep only their hashes and spend them
atomically (stores.LifecycleStore). Mail is composed and sent off the request path (the
Outgoing queue): asking for a link answers the same way, in about the same time, whether or not
the address belongs to an account, and a mail failure never fails the request that asked for
it (the queue logs, counts and retries it).

Issuing a new reset link makes older unused ones of the account stop working; older
verification links keep working until they expire (each proves the same address).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING
from urllib.parse import quote
from uuid import UUID

from authsvc import passwords
from authsvc.errors import InvalidCredentials, LinkInvalid, TokenRevoked, WeakPassword
from authsvc.mail import Mail
from authsvc.services import audit, sessions
from authsvc.stores import COMPLETE, Identity, LifecycleStore, Stores

if TYPE_CHECKING:
    from authsvc.config import Settings
    from authsvc.services.accounts import Context

log = logging.getLogger("authsvc.links")

VERIFICATION_TTL = 24 * 3600
RESET_TTL = 30 * 60
VERIFICATION, RESET = "email_verification", "password_reset"


def _lifecycle(stores: Stores) -> LifecycleStore:
    assert stores.lifecycle is not None, "these stores have no account lifecycle"
    return stores.lifecycle


def _submit(ctx: Context, kind: str, compose) -> None:
    if ctx.mail is None:
        log.error("no mail queue: message not sent", extra={"kind": kind})
        return
    ctx.mail.submit(kind, compose)


def _link(ctx: Context, page: str, token: str) -> str:
    return f"{ctx.public_url}/{page}?token={quote(token, safe='')}"


def _mailable(identity: Identity | None) -> bool:
    return (
        identity is not None
        and identity.email is not None
        and not identity.is_anonymous
        and identity.signup_state == COMPLETE
    )


# -- email verification ---------------------------------------------------------------------


def verification_mail(ctx: Context, identity: Identity | None) -> Mail | None:
    """A fresh verification link for the identity's address; None when there is nothing to
    confirm (already confirmed, anonymous, unfinished)."""
    if not _mailable(identity) or identity.email_confirmed_at is not None:  # type: ignore
        return None
    assert identity is not None and identity.email is not None
    token = _lifecycle(ctx.stores).issue_verification(identity, VERIFICATION_TTL)
    if token is None:
        return None
    text = (
        "Hello,\n\n"
        "Please confirm that this is your email address by opening this link:\n\n"
        f"{_link(ctx, 'verify', token)}\n\n"
        "The link works once. If you did not create an account, you can ignore this message.\n"
    )
    return Mail(VERIFICATION, identity.email, "Confirm your email address", text, identity.id)


def send_verification(ctx: Context, user_id: UUID) -> None:
    """Queue a verification mail for this account (at signup and upgrade)."""
    _submit(ctx, VERIFICATION, lambda: verification_mail(ctx, ctx.stores.identities.get(user_id)))


def resend_verification(ctx: Context, email: str) -> None:
    """Queue a new verification link for `email` when it is an unconfirmed account's; the
    caller answers 202 either way."""

    def compose() -> Mail | None:
        identity = ctx.stores.identities.find_by_email(email)
        return verification_mail(ctx, identity) if identity is not None else None

    _submit(ctx, VERIFICATION, compose)


def verify_email(ctx: Context, token: str) -> sessions.User:
    """Spend a verification token: the address it was sent to is confirmed."""
    user_id = _lifecycle(ctx.stores).confirm_email(token)
    if user_id is None:
        raise LinkInvalid()
    audit.record(ctx.stores, ctx.origin, audit.EMAIL_VERIFIED, user_id)
    log.info("email verified", extra={"user_id": str(user_id)})
    user = sessions.load_user(ctx.stores, user_id)
    if user is None:
        raise LinkInvalid()
    return user


# -- forgot, reset, change ------------------------------------------------------------------


def reset_mail(ctx: Context, email: str) -> Mail | None:
    identity = ctx.stores.identities.find_by_email(email)
    if not _mailable(identity):
        return None
    assert identity is not None and identity.email is not None
    token = _lifecycle(ctx.stores).issue_reset(identity, RESET_TTL)
    text = (
        "Hello,\n\n"
        "Someone (we hope you) asked to reset the password of your account. Open this link "
        "within 30 minutes to choose a new one:\n\n"
        f"{_link(ctx, 'reset', token)}\n\n"
        "The link works once, and only the newest link you asked for works. If you did not "
        "ask, ignore this message: your password stays as it is.\n"
    )
    return Mail(RESET, identity.email, "Reset your password", text, identity.id)


def forgot_password(ctx: Context, email: str) -> None:
    """Queue a reset link for `email` when it is an account's. The request does the same work
    whether or not it is (the lookup happens off the request path)."""
    _submit(ctx, RESET, lambda: reset_mail(ctx, email))


def reset_owner(ctx: Context, token: str) -> UUID:
    """The account a usable reset token is for (LinkInvalid otherwise); nothing is spent."""
    owner = _lifecycle(ctx.stores).reset_owner(token)
    if owner is None:
        raise LinkInvalid()
    return owner


def reset_password(ctx: Context, token: str, password: str) -> UUID:
    """Spend the token: new password (the policy applies), the address confirmed, every
    session revoked."""
    owner = reset_owner(ctx, token)
    identity = ctx.stores.identities.get(owner)
    if identity is None:
        raise LinkInvalid()
    reasons = passwords.policy_violations(password, identity.email)
    if reasons:
        raise WeakPassword(details={"password": reasons})  # nothing spent: fix and resend
    user_id = _lifecycle(ctx.stores).reset_password(token, password, ctx.hasher.hash(password))
    if user_id is None:
        raise LinkInvalid()
    audit.record(ctx.stores, ctx.origin, audit.PASSWORD_RESET, user_id)
    log.info("password reset; every session revoked", extra={"user_id": str(user_id)})
    return user_id


def change_password(
    ctx: Context, user_id: UUID, current_password: str, password: str
) -> sessions.Session:
    """With the current password: set a new one, revoke every session, answer a fresh one."""
    identity = ctx.stores.identities.get(user_id)
    if identity is None:
        raise TokenRevoked("The account this token belongs to no longer exists.")
    checked = (
        sessions.authenticate(ctx.stores, ctx.hasher, identity.email, current_password)
        if identity.email is not None and not identity.is_anonymous
        else None
    )
    if checked is None or checked.id != user_id:
        raise InvalidCredentials("The current password is not right.")
    reasons = passwords.policy_violations(password, identity.email)
    if reasons:
        raise WeakPassword(details={"password": reasons})
    if not _lifecycle(ctx.stores).change_password(user_id, password, ctx.hasher.hash(password)):
        raise TokenRevoked("The account this token belongs to no longer exists.")
    audit.record(ctx.stores, ctx.origin, audit.PASSWORD_CHANGED, user_id)
    log.info("password changed; every other session revoked", extra={"user_id": str(user_id)})
    return sessions.start_session(ctx.stores, user_id, ctx.mint, ctx.refresh_ttl, ctx.user_agent)


def purge_expired_tokens(stores: Stores, settings: Settings) -> int:
    """Delete spent and expired one-time tokens (for `authsvc purge`); how many."""
    return _lifecycle(stores).purge_tokens()
