"""/api/v1/auth/...: parse the body, call the service, envelope the answer."""

from __future__ import annotations

from typing import Any

from flask import current_app, request
from flask_smorest import Blueprint

from authsvc import errors, tokens
from authsvc.api.schemas import (
    AuthResultSchema,
    EmptySchema,
    LoginSchema,
    LogoutSchema,
    ProfileUpdateSchema,
    RefreshSchema,
    SessionResultSchema,
    SignupResultSchema,
    SignupSchema,
    UserResultSchema,
    enveloped,
    error_schema,
)
from authsvc.errors import envelope_ok
from authsvc.services import accounts, signup

blp = Blueprint("auth", __name__, url_prefix="/api/v1/auth", description="Accounts and sessions")

# Answers of every endpoint that reads a JSON body (API.md, "Codes every endpoint may answer"):
# the body guard and the schema.
BODY_ERRORS: dict[int, tuple[type[errors.AuthError], ...]] = {
    400: (errors.BadRequest,),
    413: (errors.PayloadTooLarge,),
    415: (errors.UnsupportedMediaType,),
    422: (errors.ValidationFailed,),
}
# Answers of every endpoint that needs the database, or meets a bug.
SERVER_ERRORS: dict[int, tuple[type[errors.AuthError], ...]] = {
    500: (errors.InternalError,),
    503: (errors.DatabaseUnavailable,),
}
# Answers gunicorn gives before any route runs (a request line, headers or framing it refuses;
# serving.Worker.handle_error), so every operation can meet them.
EDGE_ERRORS: dict[int, tuple[type[errors.AuthError], ...]] = {
    400: (errors.BadRequest,),
    414: (errors.UriTooLong,),
    417: (errors.ExpectationFailed,),
    431: (errors.HeadersTooLarge,),
    501: (errors.NotImplementedHere,),
}
TOKEN_ERRORS = (errors.AuthRequired, errors.TokenInvalid, errors.TokenExpired, errors.TokenRevoked)


def errors_doc(
    extra: dict[int, tuple[type[errors.AuthError], ...]],
    body: bool = True,
    blueprint: Blueprint | None = None,
):
    """Declare every error response of a view in the OpenAPI document, code by code."""
    common = {**EDGE_ERRORS, **(BODY_ERRORS if body else {}), **SERVER_ERRORS}
    merged = {status: list(classes) for status, classes in common.items()}
    for status, classes in extra.items():
        merged.setdefault(status, [])[:0] = classes

    def decorate(view):
        documented = view
        for status, classes in sorted(merged.items()):
            text = " | ".join(f"{cls.code}: {cls.message}" for cls in classes)
            schema = error_schema(*dict.fromkeys(cls.code for cls in classes))
            alt = (blueprint or blp).alt_response(status, schema=schema, description=text)
            documented = alt(documented)
        # alt_response only documents, but each of its wrappers would also run on every call
        # (seven or eight here, each through current_app.ensure_sync): the view keeps their
        # document and not their wrappers.
        view._apidoc = documented._apidoc
        return view

    return decorate


def _runtime():
    return current_app.extensions["authsvc"]


def _context() -> accounts.Context:
    return _runtime().context(request.headers.get("User-Agent"))


def _client() -> str:
    return request.remote_addr or "unknown"


def _idempotency_key() -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is not None and not (1 <= len(key) <= 255 and key.isprintable()):
        raise errors.ValidationFailed(
            details={"Idempotency-Key": ["Use 1 to 255 printable characters."]}
        )
    return key


@blp.route("/signup", methods=["POST"])
@blp.arguments(SignupSchema)
@blp.response(
    201,
    enveloped(SignupResultSchema),
    headers={
        "Idempotent-Replayed": {
            "description": "`true` when this is the first answer to this Idempotency-Key "
            "again, replayed: nothing was created by this request.",
            "schema": {"type": "string", "enum": ["true"]},
        }
    },
)
@blp.doc(
    parameters=[
        {
            "in": "header",
            "name": "Idempotency-Key",
            "required": False,
            "schema": {"type": "string", "maxLength": 255},
            "description": "Retrying with the same key and body replays the first answer.",
        }
    ]
)
@errors_doc(
    {
        409: (errors.EmailTaken, errors.UsernameTaken, errors.IdempotencyKeyInFlight),
        422: (errors.WeakPassword, errors.IdempotencyKeyReused),
        429: (errors.RateLimited,),
        500: (errors.SignupFailed,),
    }
)
def signup_view(body: dict[str, Any]):
    """Create an account: the identity and its profile, or neither."""
    _runtime().rate_limits.hit("signup", _client())
    key = _idempotency_key()
    answer, replayed = accounts.sign_up(_context(), signup.SignupData(**body), key)
    return envelope_ok(answer), 201, {"Idempotent-Replayed": "true"} if replayed else {}


@blp.route("/login", methods=["POST"])
@blp.arguments(LoginSchema)
@blp.response(200, enveloped(AuthResultSchema))
@errors_doc(
    {
        401: (errors.InvalidCredentials,),
        403: (errors.UserBanned, errors.EmailNotConfirmed),
        429: (errors.RateLimited,),
    }
)
def login_view(body: dict[str, Any]):
    """Sign in with email and password."""
    _runtime().rate_limits.hit("login", _client(), "account:" + body["email"].lower())
    user, session = accounts.log_in(_context(), body["email"], body["password"])
    return envelope_ok({"user": user.as_dict(), "session": session.as_dict()})


@blp.route("/refresh", methods=["POST"])
@blp.arguments(RefreshSchema)
@blp.response(200, enveloped(SessionResultSchema))
@errors_doc(
    {
        401: (
            errors.TokenInvalid,
            errors.TokenExpired,
            errors.TokenRevoked,
            errors.RefreshTokenReused,
        ),
        403: (errors.UserBanned,),
        429: (errors.RateLimited,),
    }
)
def refresh_view(body: dict[str, Any]):
    """Exchange a refresh token for a new session pair; the old refresh token is spent."""
    _runtime().rate_limits.hit("refresh", _client())
    session = accounts.refresh(_context(), body["refresh_token"])
    return envelope_ok({"session": session.as_dict()})


@blp.route("/logout", methods=["POST"])
@tokens.signed_in
@blp.arguments(LogoutSchema, required=False)
@blp.response(200, enveloped(EmptySchema))
@blp.doc(security=[{"bearerAuth": []}])
@errors_doc({401: TOKEN_ERRORS, 403: (errors.UserBanned,)})
def logout_view(body: dict[str, Any]):
    """End this session, or with scope "global" every session of the user."""
    user_id, session_id = tokens.current_ids()
    accounts.log_out(_context(), user_id, session_id, body.get("scope", "local"))
    return envelope_ok({})


@blp.route("/me", methods=["GET"])
@tokens.signed_in
@blp.response(200, enveloped(UserResultSchema))
@blp.doc(security=[{"bearerAuth": []}])
@errors_doc({401: TOKEN_ERRORS, 403: (errors.UserBanned,)}, body=False)
def me_view():
    """The signed-in user."""
    user_id, _ = tokens.current_ids()
    # The session check already read the user with the session where it could: not again.
    return envelope_ok(
        {"user": accounts.me(_runtime().stores, user_id, tokens.checked_session()).as_dict()}
    )


@blp.route("/me", methods=["PATCH"])
@tokens.signed_in
@blp.arguments(ProfileUpdateSchema, required=False)
@blp.response(200, enveloped(UserResultSchema))
@blp.doc(security=[{"bearerAuth": []}])
@errors_doc({401: TOKEN_ERRORS, 403: (errors.UserBanned,), 409: (errors.UsernameTaken,)})
def update_me_view(body: dict[str, Any]):
    """Change the username and/or display name."""
    user_id, _ = tokens.current_ids()
    user = accounts.update_me(_context(), user_id, body)
    return envelope_ok({"user": user.as_dict()})
