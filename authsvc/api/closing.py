"""DELETE /api/v1/auth/me: the signed-in user closes their account."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from flask import current_app, request
from flask_smorest import Blueprint

from authsvc import errors, tokens
from authsvc.api.admin_schemas import CloseAccountSchema
from authsvc.api.auth import TOKEN_ERRORS, errors_doc
from authsvc.api.schemas import EmptySchema, enveloped
from authsvc.errors import envelope_ok
from authsvc.services import closing

blp = Blueprint("closing", __name__, url_prefix="/api/v1/auth", description="Closing an account")


@blp.route("/me", methods=["DELETE"])
@tokens.signed_in
@blp.arguments(CloseAccountSchema, required=False)
@blp.response(200, enveloped(EmptySchema))
@blp.doc(security=[{"bearerAuth": []}])
@errors_doc(
    {
        401: (errors.InvalidCredentials, errors.ReauthenticationRequired, *TOKEN_ERRORS),
        403: (errors.UserBanned,),
        429: (errors.RateLimited,),
        500: (errors.DeletionFailed,),
    },
    blueprint=blp,
)
def close_account(body: dict[str, Any]):
    """Close this account: every session ends, then the identity and the profile are removed.
    Confirm with the current password, unless you logged in within the last few minutes."""
    runtime = current_app.extensions["authsvc"]
    user_id, session_id = tokens.current_ids()
    password = body.get("password")
    if password is not None:  # a password guess counts against the login limits
        runtime.rate_limits.hit("login", request.remote_addr or "unknown", _account_key(user_id))
    ctx = runtime.context(request.headers.get("User-Agent"))
    closing.close_own_account(ctx, user_id, session_id, password)
    return envelope_ok({})


def _account_key(user_id: UUID) -> str:
    """The key login counts this account's guesses under ("account:" and the email), so that
    guesses here and at login share one budget."""
    check = tokens.checked_session()
    identity = check.identity if check is not None else None
    if identity is None:  # the identities live elsewhere (Supabase Auth)
        identity = current_app.extensions["authsvc"].stores.identities.get(user_id)
    email = identity.email if identity is not None else None
    return f"account:{email.lower()}" if email else f"account:{user_id}"
