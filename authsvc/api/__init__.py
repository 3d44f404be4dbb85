"""The JSON API: flask-smorest blueprints, the OpenAPI document, and the request guards."""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app, request
from flask_smorest import Api as SmorestApi

from authsvc import errors

JSON_METHODS = {"POST", "PUT", "PATCH"}


class Api(SmorestApi):
    """flask-smorest, with its HTTP errors rendered in our envelope instead of its own."""

    def handle_http_exception(self, error: Any):
        return current_app.extensions["authsvc.handle_http_exception"](error)

    def _register_responses(self) -> None:  # flask-smorest's default error schemas: ours instead
        pass


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
    from authsvc.api import auth, health

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
    api = Api(app)
    api.register_blueprint(auth.blp)
    api.register_blueprint(health.blp)
    app.extensions["authsvc.api"] = api
