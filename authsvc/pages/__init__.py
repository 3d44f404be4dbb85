"""The hosted pages: /signup, /login, /account and logout, rendered on the server.

They call the same services as the JSON API. The browser holds its session in one signed,
HttpOnly, SameSite cookie (Secure in production), and every form carries a per-session CSRF
token that each POST must echo.
"""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the pages' blueprint and the cookie they keep the session in."""
    from authsvc.pages import (
        closing,  # noqa: F401 - adds /account/delete to bp, before it registers
        lifecycle,  # noqa: F401 - its routes join the pages' blueprint
    )
    from authsvc.pages.browser import SessionCookie
    from authsvc.pages.views import bp, page_for_browser

    app.extensions["authsvc.pages"] = SessionCookie(app.extensions["authsvc"].settings)
    app.extensions["authsvc.page_for_browser"] = page_for_browser
    app.register_blueprint(bp)
