"""The JSON API: flask-smorest blueprints, the OpenAPI document, and the request guards."""

from __future__ import annotations

import http
import re
from typing import Any

from apispec import APISpec, BasePlugin
from flask import Flask, current_app, request
from flask_smorest import Api as SmorestApi
from flask_smorest.utils import prepare_response

from authsvc import errors
from authsvc.api.schemas import ErrorSchema

JSON_METHODS = {"POST", "PUT", "PATCH", "DELETE"}

REQUEST_ID = "X-Request-ID"
RETRY_AFTER = "Retry-After"
# Answers that tell the client when to come back (RATE_LIMITED, DATABASE_UNAVAILABLE, NOT_READY).
RETRY_STATUSES = {429, 503}
HEADERS: dict[str, dict[str, Any]] = {
    REQUEST_ID: {
        "description": "The client's X-Request-ID when it sent a sane one (1 to 128 of "
        "A-Z a-z 0-9 . _ : -), otherwise a fresh one; the same id is in the logs and, on "
        "errors, in error.request_id.",
        "required": True,
        "schema": {"type": "string", "pattern": r"^[A-Za-z0-9._:\-]{1,128}$"},
    },
    RETRY_AFTER: {
        "description": "Seconds to wait before retrying.",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    },
}


def response_headers(status: int | str) -> dict[str, str]:
    """The headers every response with this status carries, by component name."""
    names = [REQUEST_ID]
    if str(status).isdigit() and int(status) in RETRY_STATUSES:
        names.append(RETRY_AFTER)
    return {name: name for name in names}


class ResponseHeadersPlugin(BasePlugin):
    """Documents the headers the service adds to every response (observability, errors)."""

    def init_spec(self, spec: APISpec) -> None:
        for name, header in HEADERS.items():
            spec.components.header(name, header)

    def operation_helper(
        self, path: str | None = None, operations: dict | None = None, **kwargs: Any
    ) -> None:
        for operation in (operations or {}).values():
            for status, response in operation.get("responses", {}).items():
                if isinstance(response, dict):  # a name refers to a component, set up below
                    response.setdefault("headers", {}).update(response_headers(status))


class OperationIdsPlugin(BasePlugin):
    """Names every operation (operationId), for the clients generated from the document: the
    method and the path, `POST /api/v1/auth/login` as `postAuthLogin`, a path parameter as
    `By` and its name (`getAdminUsersByUserId`). Unique because method and path are."""

    def operation_helper(
        self, path: str | None = None, operations: dict | None = None, **kwargs: Any
    ) -> None:
        for method, operation in (operations or {}).items():
            operation.setdefault("operationId", operation_id(method, path or "/"))


def operation_id(method: str, path: str) -> str:
    words = [method.lower()]
    for segment in path.removeprefix("/api/v1").strip("/").split("/"):
        if segment.startswith("{") and segment.endswith("}"):
            words.append("By")
            segment = segment[1:-1]
        words.extend(w[:1].upper() + w[1:] for w in re.split(r"[^A-Za-z0-9]+", segment) if w)
    return "".join(words)


class Api(SmorestApi):
    """flask-smorest, with its HTTP errors rendered in our envelope instead of its own.

    No operation has a catch-all "default" response: each lists the statuses it can answer,
    so a client (or schemathesis) can tell a documented answer from a surprise.
    """

    ERROR_SCHEMA = ErrorSchema
    DEFAULT_ERROR_RESPONSE_NAME = None

    def handle_http_exception(self, error: Any):
        return current_app.extensions["authsvc.handle_http_exception"](error)

    def _register_responses(self) -> None:
        """flask-smorest's named responses (one per status, used when referenced): our
        envelope and our headers."""
        for status in http.HTTPStatus:
            response: dict[str, Any] = {
                "description": status.phrase,
                "headers": response_headers(status.value),
            }
            if status >= 400:
                response["schema"] = self.ERROR_SCHEMA
            prepare_response(response, self.spec, self.DEFAULT_RESPONSE_CONTENT_TYPE)
            self.spec.components.response(status.name, response, lazy=True)


def _guard_json_body() -> None:
    """415 for a body that is not JSON, 400 for JSON that is malformed or not an object."""
    if request.method not in JSON_METHODS or not request.path.startswith("/api/"):
        return
    raw = request.get_data(cache=True)  # 413 past MAX_CONTENT_LENGTH
    if not raw.strip():
        return  # no body: the schema reports any required field as missing
    if not request.is_json:
        raise errors.UnsupportedMediaType()
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # nesting deep enough to exhaust the parser
        body = None
    if body is None or not isinstance(body, dict):
        raise errors.BadRequest()


def init_app(app: Flask) -> None:
    from authsvc.api import auth, health, lifecycle

    app.config.update(
        API_TITLE="authsvc",
        API_VERSION="v1",
        OPENAPI_VERSION="3.1.0",
        OPENAPI_URL_PREFIX="/api/v1",
        OPENAPI_JSON_PATH="openapi.json",
        API_SPEC_OPTIONS={
            "info": {
                "description": "Signup that never leaves half a user behind; login, rotating "
                "refresh tokens, logout and profile. Every response is enveloped.",
            },
            "components": {
                "securitySchemes": {
                    "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
                }
            },
        },
    )
    app.before_request(_guard_json_body)
    api = Api(app, spec_kwargs={"extra_plugins": [ResponseHeadersPlugin(), OperationIdsPlugin()]})
    api.register_blueprint(auth.blp)
    api.register_blueprint(health.blp)
    api.register_blueprint(lifecycle.blp)
    # Account lifecycle (admin): closing an account, the admin API.
    from authsvc.api import admin, closing

    api.spec.components.security_scheme("adminKey", admin.ADMIN_KEY_SCHEME)
    api.register_blueprint(closing.blp)
    api.register_blueprint(admin.blp)
    app.extensions["authsvc.api"] = api
