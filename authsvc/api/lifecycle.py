"""/api/v1/auth/...: anonymous accounts and upgrade, email verification, passwords."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint

from authsvc import errors, tokens
from authsvc.api.auth import TOKEN_ERRORS, _client, _context, _runtime, errors_doc
from authsvc.api.lifecycle_schemas import (
    AnonymousSchema,
    EmailSchema,
    PasswordChangeSchema,
    ResetSchema,
    TokenSchema,
    UpgradeSchema,
)
from authsvc.api.schemas import (
    AuthResultSchema,
    EmptySchema,
    SessionResultSchema,
    UserResultSchema,
    enveloped,
)
from authsvc.errors import envelope_ok
from authsvc.services import anonymous, links

blp = Blueprint(
    "lifecycle",
    __name__,
    url_prefix="/api/v1/auth",
    description="The account lifecycle: anonymous accounts, email verification, passwords",
)
SECURED = {"security": [{"bearerAuth": []}]}


def _limit(name: str, *keys: str) -> None:
    _runtime().rate_limits.hit(name, *keys)


@blp.route("/anonymous", methods=["POST"])
@blp.arguments(AnonymousSchema, required=False)
@blp.response(201, enveloped(AuthResultSchema))
@errors_doc({429: (errors.RateLimited,), 500: (errors.SignupFailed,)}, blueprint=blp)
def anonymous_view(body: dict[str, Any]):
    """Create an anonymous account (no email, no password) and its session: the signup saga's
    guarantee, whole or gone."""
    _limit("anonymous", _client())
    user, session = anonymous.start(_context())
    return envelope_ok({"user": user.as_dict(), "session": session.as_dict()})


@blp.route("/upgrade", methods=["POST"])
@tokens.signed_in
@blp.arguments(UpgradeSchema)
@blp.response(200, enveloped(AuthResultSchema))
@blp.doc(**SECURED)
@errors_doc(
    {
        401: TOKEN_ERRORS,
        409: (errors.EmailTaken, errors.UsernameTaken, errors.NotAnonymous),
        422: (errors.WeakPassword,),
        429: (errors.RateLimited,),
        500: (errors.UpgradeFailed,),
    },
    blueprint=blp,
)
def upgrade_view(body: dict[str, Any]):
    """Give this anonymous account an email and password: same id, same profile; every earlier
    session ends and a fresh one is answered."""
    _limit("signup", _client())
    user_id, _ = tokens.current_ids()
    user, session = anonymous.upgrade(
        _context(), user_id, body["email"], body["password"], body.get("username")
    )
    return envelope_ok({"user": user.as_dict(), "session": session.as_dict()})


@blp.route("/verify", methods=["POST"])
@blp.arguments(TokenSchema)
@blp.response(200, enveloped(UserResultSchema))
@errors_doc({400: (errors.LinkInvalid,), 429: (errors.RateLimited,)}, blueprint=blp)
def verify_view(body: dict[str, Any]):
    """Confirm the email address a verification link was sent to (the link works once)."""
    _limit("verify", _client())
    user = links.verify_email(_context(), body["token"])
    return envelope_ok({"user": user.as_dict()})


@blp.route("/verify/resend", methods=["POST"])
@blp.arguments(EmailSchema)
@blp.response(202, enveloped(EmptySchema))
@errors_doc({429: (errors.RateLimited,)}, blueprint=blp)
def resend_view(body: dict[str, Any]):
    """Mail a new verification link when the address is an unconfirmed account's: 202
    whether or not it is."""
    _limit("verify", _client(), "account:" + body["email"].lower())
    links.resend_verification(_context(), body["email"])
    return envelope_ok({})


@blp.route("/password/forgot", methods=["POST"])
@blp.arguments(EmailSchema)
@blp.response(202, enveloped(EmptySchema))
@errors_doc({429: (errors.RateLimited,)}, blueprint=blp)
def forgot_view(body: dict[str, Any]):
    """Mail a password reset link (valid 30 minutes, once) when the address is an account's:
    202 whether or not it is, in the same time."""
    _limit("password_forgot", _client(), "account:" + body["email"].lower())
    links.forgot_password(_context(), body["email"])
    return envelope_ok({})


@blp.route("/password/reset", methods=["POST"])
@blp.arguments(ResetSchema)
@blp.response(200, enveloped(EmptySchema))
@errors_doc(
    {400: (errors.LinkInvalid,), 422: (errors.WeakPassword,), 429: (errors.RateLimited,)},
    blueprint=blp,
)
def reset_view(body: dict[str, Any]):
    """Set a new password with a reset link's token: every session of the account is revoked
    and its address confirmed."""
    _limit("password_reset", _client())
    ctx = _context()
    owner = links.reset_owner(ctx, body["token"])
    _limit("password_reset", f"account:{owner}")
    links.reset_password(ctx, body["token"], body["password"])
    return envelope_ok({})


@blp.route("/password", methods=["POST"])
@tokens.signed_in
@blp.arguments(PasswordChangeSchema)
@blp.response(200, enveloped(SessionResultSchema))
@blp.doc(**SECURED)
@errors_doc(
    {
        401: (errors.InvalidCredentials, *TOKEN_ERRORS),
        422: (errors.WeakPassword,),
        429: (errors.RateLimited,),
    },
    blueprint=blp,
)
def change_password_view(body: dict[str, Any]):
    """Change the password (the current one required): every session ends, a fresh one is
    answered."""
    user_id, _ = tokens.current_ids()
    _limit("login", _client(), f"password-change:{user_id}")
    session = links.change_password(_context(), user_id, body["current_password"], body["password"])
    return envelope_ok({"session": session.as_dict()})
