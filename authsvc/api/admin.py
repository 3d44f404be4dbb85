"""/api/v1/admin/...: the admin API. Closed unless the caller holds the admin role (a user's
access token) or presents AUTHSVC_ADMIN_KEY as its bearer token."""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Callable
from typing import Any
from uuid import UUID

from flask import current_app, g, request
from flask_smorest import Blueprint

from authsvc import errors, tokens
from authsvc.api.admin_schemas import (
    USER_ID_EXAMPLE,
    AccountDetailSchema,
    AdminUserResultSchema,
    AuditPageSchema,
    AuditQuerySchema,
    BanSchema,
    RevokedSchema,
    UserListQuerySchema,
    UserListSchema,
)
from authsvc.api.auth import TOKEN_ERRORS, errors_doc
from authsvc.api.schemas import EmptySchema, enveloped
from authsvc.errors import envelope_ok
from authsvc.services import admin
from authsvc.services.audit import Origin

blp = Blueprint(
    "admin",
    __name__,
    url_prefix="/api/v1/admin",
    description="Operators: users, bans, sessions, the audit log. Needs the admin role or "
    "AUTHSVC_ADMIN_KEY.",
)

# Either an admin's access token or the admin key, both as `Authorization: Bearer ...`.
SECURITY = [{"bearerAuth": []}, {"adminKey": []}]
ADMIN_KEY_SCHEME = {
    "type": "http",
    "scheme": "bearer",
    "description": "AUTHSVC_ADMIN_KEY, from the service's environment",
}
AUTH_ERRORS: dict[int, tuple[type[errors.AuthError], ...]] = {
    401: TOKEN_ERRORS,
    403: (errors.Forbidden,),
}
USER_PATH = {
    "in": "path",
    "name": "user_id",
    "required": True,
    "schema": {"type": "string", "format": "uuid", "example": USER_ID_EXAMPLE},
}


def admin_errors(
    extra: dict[int, tuple[type[errors.AuthError], ...]] | None = None, body: bool = False
) -> Callable:
    """errors_doc for an admin operation: its own errors, and 401 and 403."""
    return errors_doc({**AUTH_ERRORS, **(extra or {})}, body=body, blueprint=blp)


def _same_secret(presented: str, expected: str) -> bool:
    """Constant-time comparison that does not reveal the key's length either."""
    return hmac.compare_digest(
        hashlib.sha256(presented.encode()).digest(), hashlib.sha256(expected.encode()).digest()
    )


def _authorise() -> Origin:
    """Who the caller is: the admin key, or a user holding the admin role. 401 without a valid
    token (the token's own errors), 403 for a user who is no admin."""
    runtime = current_app.extensions["authsvc"]
    origin = runtime.context(request.headers.get("User-Agent")).origin
    key = runtime.settings.admin_key
    scheme, _, credential = (request.headers.get("Authorization") or "").partition(" ")
    if key and scheme.lower() == "bearer" and _same_secret(credential.strip(), key):
        return origin.acting("admin_key")
    tokens.verify_access()  # AUTH_REQUIRED, TOKEN_INVALID, TOKEN_EXPIRED, TOKEN_REVOKED
    user_id, _session = tokens.current_ids()
    if not admin.is_admin(runtime.stores, user_id):
        raise errors.Forbidden()
    return origin.acting("admin", user_id)


def admin_required(view: Callable) -> Callable:
    """Authorise before anything else (the body is read only for an admin)."""

    @functools.wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        g.admin_origin = _authorise()
        return view(*args, **kwargs)

    return guarded


def _stores():
    return current_app.extensions["authsvc"].stores


@blp.route("/users", methods=["GET"])
@admin_required
@blp.arguments(UserListQuerySchema, location="query")
@blp.response(200, enveloped(UserListSchema))
@blp.doc(security=SECURITY)
@admin_errors({422: (errors.ValidationFailed,)})
def list_users(query: dict[str, Any]):
    """Users newest first, optionally those whose email contains `q`; follow `next_cursor`."""
    accounts, following = admin.list_accounts(
        _stores(), query.get("q"), query.get("cursor"), query["limit"]
    )
    return envelope_ok(
        {"users": [admin.account_dict(a) for a in accounts], "next_cursor": following}
    )


@blp.route("/users/<uuid:user_id>", methods=["GET"])
@admin_required
@blp.response(200, enveloped(AccountDetailSchema))
@blp.doc(security=SECURITY, parameters=[USER_PATH])
@admin_errors({404: (errors.NotFound,)})
def show_user(user_id: UUID):
    """Both rows of one user (identity and profile) and whether they agree."""
    return envelope_ok(admin.detail_dict(admin.show(_stores(), user_id)))


@blp.route("/users/<uuid:user_id>/ban", methods=["POST"])
@admin_required
@blp.arguments(BanSchema)
@blp.response(200, enveloped(AdminUserResultSchema))
@blp.doc(security=SECURITY, parameters=[USER_PATH])
@admin_errors({404: (errors.NotFound,)}, body=True)
def ban_user(body: dict[str, Any], user_id: UUID):
    """Ban for `duration_seconds` from now; every session of the user ends at once."""
    account = admin.ban(_stores(), g.admin_origin, user_id, body["duration_seconds"])
    return envelope_ok({"user": admin.account_dict(account)})


@blp.route("/users/<uuid:user_id>/unban", methods=["POST"])
@admin_required
@blp.response(200, enveloped(AdminUserResultSchema))
@blp.doc(security=SECURITY, parameters=[USER_PATH])
@admin_errors({404: (errors.NotFound,)}, body=True)
def unban_user(user_id: UUID):
    """Lift a ban."""
    account = admin.unban(_stores(), g.admin_origin, user_id)
    return envelope_ok({"user": admin.account_dict(account)})


@blp.route("/users/<uuid:user_id>", methods=["DELETE"])
@admin_required
@blp.response(200, enveloped(EmptySchema))
@blp.doc(security=SECURITY, parameters=[USER_PATH])
@admin_errors({404: (errors.NotFound,), 500: (errors.DeletionFailed,)}, body=True)
def delete_user(user_id: UUID):
    """Close the account: its sessions end, then both rows go (as DELETE /api/v1/auth/me)."""
    admin.delete(_stores(), g.admin_origin, user_id)
    return envelope_ok({})


@blp.route("/users/<uuid:user_id>/sessions", methods=["DELETE"])
@admin_required
@blp.response(200, enveloped(RevokedSchema))
@blp.doc(security=SECURITY, parameters=[USER_PATH])
@admin_errors({404: (errors.NotFound,)}, body=True)
def revoke_sessions(user_id: UUID):
    """End every session of the user."""
    return envelope_ok({"revoked": admin.revoke_sessions(_stores(), g.admin_origin, user_id)})


@blp.route("/audit", methods=["GET"])
@admin_required
@blp.arguments(AuditQuerySchema, location="query")
@blp.response(200, enveloped(AuditPageSchema))
@blp.doc(security=SECURITY)
@admin_errors({422: (errors.ValidationFailed,)})
def audit_events(query: dict[str, Any]):
    """The audit log, newest first, optionally of one user and one event type."""
    events, following = admin.events(
        _stores(), query.get("user_id"), query.get("type"), query.get("cursor"), query["limit"]
    )
    return envelope_ok({"events": [admin.event_dict(e) for e in events], "next_cursor": following})
