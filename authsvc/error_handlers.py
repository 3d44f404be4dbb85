"""The one place errors become responses: Flask's error handlers, every error in the envelope."""

from __future__ import annotations

import logging

from flask import Flask, g, jsonify, request
from werkzeug.exceptions import HTTPException

from authsvc.errors import AuthError, InternalError, envelope_error, from_http_exception

log = logging.getLogger("authsvc.errors")


def init_app(app: Flask) -> None:
    """Register the handlers that render every error as the envelope."""

    def render(err: AuthError):
        g.auth_error = err  # what the answer was, for metrics
        response = jsonify(envelope_error(err, g.get("request_id")))
        response.status_code = err.status
        for key, value in err.headers.items():
            response.headers[key] = value
        return response

    app.extensions["authsvc.render_error"] = render

    @app.errorhandler(AuthError)
    def handle_auth_error(err: AuthError):
        if err.status >= 500:
            log.error(
                "request failed: %s",
                err.code,
                exc_info=err.__cause__ or err,
                extra={"error_code": err.code, "details": err.details},
            )
        return render(err)

    @app.errorhandler(HTTPException)
    def handle_http_exception(exc: HTTPException):
        err = from_http_exception(exc)
        page = app.extensions.get("authsvc.page_for_browser")
        if exc.code == 404 and page is not None and _browser_asks_for_a_page():
            g.auth_error = err
            return page(err)
        allow = exc.get_response().headers.get("Allow") if exc.code == 405 else None
        if allow:
            err.headers["Allow"] = allow
        return render(err)

    app.extensions["authsvc.handle_http_exception"] = handle_http_exception

    @app.errorhandler(Exception)
    def handle_unexpected(exc: Exception):
        log.error("unhandled exception", exc_info=exc, extra={"error_code": InternalError.code})
        return render(InternalError())


def _browser_asks_for_a_page() -> bool:
    """A URL outside the API, asked for by a client that prefers HTML (a browser; curl's */*
    and API clients get JSON)."""
    if request.path.startswith("/api/"):
        return False
    return request.accept_mimetypes.best_match(("application/json", "text/html")) == "text/html"
