"""/signup, /login, /account and /logout: read the form, call the services, render the page.

The pages call the same services as the JSON API and apply the same rate limits. An AuthError
re-renders the form with the message next to the field it names (or above the form); any other
error on these routes renders an HTML error page rather than the API's JSON envelope.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from flask import Blueprint, current_app, g, redirect, render_template, request, url_for
from flask_jwt_extended import decode_token
from flask_jwt_extended.exceptions import JWTExtendedException
from jwt import ExpiredSignatureError, InvalidSignatureError, PyJWTError
from marshmallow import Schema, ValidationError

from authsvc import passwords
from authsvc.api.schemas import LoginSchema, ProfileUpdateSchema, SignupSchema
from authsvc.errors import (
    AuthError,
    BadRequest,
    InternalError,
    TokenInvalid,
    TokenRevoked,
    UserBanned,
    ValidationFailed,
    from_http_exception,
)
from authsvc.pages.browser import BrowserSession, SessionCookie
from authsvc.pages.forms import LABELS, LOGIN_FIELDS, PROFILE_FIELDS, SIGNUP_FIELDS, Form
from authsvc.pages.messages import Alert, alert_for
from authsvc.services import accounts, sessions, signup

log = logging.getLogger("authsvc.pages")

bp = Blueprint(
    "pages",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/assets",
)

# No scripts at all; styles and images from this origin only; forms post back here only.
_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)

# Fixed notices selected by a query flag after a redirect (post/redirect/get).
_NOTICES = {
    "login": {
        "signed_out": "You have signed out.",
        "signed_out_everywhere": "You have signed out on every device.",
        "created": "Your account was created. Log in to continue.",
        "confirm_sent": "Your account was created. We sent you a link to confirm your email "
        "address: open it, then log in.",
        "password_reset": "Your password was changed and every session ended. Log in with the "
        "new password.",
        "confirmed": "Your email address is confirmed. Log in to continue.",
        "verification_sent": "If that address has an account waiting for confirmation, we sent "
        "it a new link.",
    },
    "account": {
        "welcome": "Welcome! Your account is ready.",
        "saved": "Your profile was saved.",
        "guest": "You are using a guest account. Save it with an email and password to keep it.",
        "upgraded": "Your account is saved. We sent a link to confirm your email address.",
        "password_changed": "Your password was changed. Every other session was signed out.",
        "verification_sent": "We sent a new confirmation link to your email address.",
        "confirmed": "Your email address is confirmed.",
    },
}


@dataclass(frozen=True)
class SignedIn:
    user: sessions.User
    user_id: UUID
    session_id: UUID


def _runtime():
    return current_app.extensions["authsvc"]


def _cookie() -> SessionCookie:
    return current_app.extensions["authsvc.pages"]


def _browser() -> BrowserSession:
    return g.browser


def _context() -> accounts.Context:
    return _runtime().context(request.headers.get("User-Agent"))


def _client() -> str:
    return request.remote_addr or "unknown"


def _load(schema: Schema, body: dict[str, Any]) -> dict[str, Any]:
    """Validate with the API's schema; its messages become VALIDATION_FAILED's details."""
    try:
        return schema.load(body)
    except ValidationError as exc:
        messages = exc.normalized_messages()
        raise ValidationFailed(details=messages if isinstance(messages, dict) else None) from exc


def _log_failure(err: AuthError) -> None:
    if err.status >= 500:
        log.error(
            "page request failed: %s",
            err.code,
            exc_info=err.__cause__ or err,
            extra={"error_code": err.code, "details": err.details},
        )


def _render(template: str, status: int = 200, headers: dict[str, str] | None = None, **context):
    return render_template(template, **context), status, headers or {}


def _failed(template: str, form: Form, err: AuthError, email: str | None = None, **context):
    """Re-render the form with `err` beside the field it concerns, with the error's status."""
    g.auth_error = err  # what the answer was, for metrics
    _log_failure(err)
    form.fail(err, email)
    return _render(template, err.status, err.headers, form=form, **context)


def _error_page(status: int, alert: Alert, headers: dict[str, str] | None = None):
    # After a failed POST, offer the form again (never /logout: it has no page of its own).
    forms = (
        url_for(".signup_page"),
        url_for(".login_page"),
        url_for(".account"),
        url_for(".forgot_page"),
        url_for(".upgrade_page"),
    )
    back = request.path if request.method == "POST" and request.path in forms else None
    return _render("error.html", status, headers, alert=alert, back=back)


def _notice(page: str) -> str | None:
    for flag, text in _NOTICES[page].items():
        if flag in request.args:
            return text
    return None


# -- the session in the cookie ------------------------------------------------------------------


def _signed_in() -> SignedIn | None:
    """The signed-in user of this request (refreshing an expired access token), or None."""
    if "signed_in" not in g:
        g.signed_in = _resolve_session(_browser())
    return g.signed_in


def _resolve_session(browser: BrowserSession) -> SignedIn | None:
    if not browser.signed_in:
        return None
    ctx = _context()
    try:
        claims = decode_token(browser.access_token)
    except (ExpiredSignatureError, InvalidSignatureError):
        # Expired, or signed with a key retired since (the cookie's own signature vouches for
        # what it holds): the refresh token, checked by the server, decides.
        try:
            session = accounts.refresh(ctx, browser.refresh_token or "")
        except AuthError as err:
            if err.status != 401:
                raise
            browser.sign_out()
            return None
        browser.rotate(session.access_token, session.refresh_token)
        claims = decode_token(session.access_token)
    except (PyJWTError, JWTExtendedException):
        browser.sign_out()
        return None
    try:
        user_id, session_id = UUID(claims["sub"]), UUID(claims["sid"])
    except (KeyError, TypeError, ValueError):
        browser.sign_out()
        return None
    try:
        seen = accounts.check_access(ctx, session_id, user_id)
        user = accounts.me(ctx.stores, user_id, seen)
    except (TokenInvalid, TokenRevoked, UserBanned):
        browser.sign_out()
        return None
    return SignedIn(user, user_id, session_id)


def _token_ids(access_token: str) -> tuple[UUID, UUID] | None:
    """(user id, session id) of a token we signed, expired or not."""
    try:
        claims = decode_token(access_token, allow_expired=True)
        return UUID(claims["sub"]), UUID(claims["sid"])
    except (PyJWTError, JWTExtendedException, KeyError, TypeError, ValueError):
        return None


@bp.before_request
def _open_session():
    if request.endpoint == "pages.static":
        return None
    g.browser = _cookie().read(request.cookies)
    if request.method == "POST" and not g.browser.csrf_matches(request.form.get("csrf_token")):
        log.info("form rejected: CSRF token missing or wrong", extra={"path": request.path})
        return _error_page(
            400,
            Alert(
                "This form has expired",
                [
                    "For your security, forms only work for a while and only from this site. "
                    "Nothing was changed. Go back, reload the page and try again."
                ],
                BadRequest.code,
                g.get("request_id"),
            ),
        )
    return None


@bp.after_request
def _close_session(response):
    browser = g.get("browser")
    if browser is not None and browser.changed:
        _cookie().write(response, browser)
    response.headers["X-Content-Type-Options"] = "nosniff"
    if request.endpoint != "pages.static":
        response.headers["Cache-Control"] = "no-store"
        response.headers["Content-Security-Policy"] = _CSP
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "same-origin"
        response.vary.add("Cookie")
    return response


@bp.context_processor
def _template_globals() -> dict[str, Any]:
    browser = g.get("browser")
    return {"csrf_token": browser.csrf_token if browser else "", "labels": LABELS}


def page_for_browser(err: AuthError):
    """The error page for a browser that asked for a URL nobody serves (the app's own handler
    asks, outside this blueprint), instead of the API's JSON."""
    alert = alert_for(err, g.get("request_id"))
    page = render_template("error.html", alert=alert, back=None, **_template_globals())
    return page, err.status, err.headers


@bp.errorhandler(AuthError)
def _auth_error_page(err: AuthError):
    _log_failure(err)
    return _error_page(err.status, alert_for(err, g.get("request_id")), err.headers)


@bp.errorhandler(Exception)
def _unexpected_error_page(exc: Exception):
    from werkzeug.exceptions import HTTPException

    if isinstance(exc, HTTPException):
        err = from_http_exception(exc)
    else:
        log.error("unhandled exception", exc_info=exc, extra={"error_code": InternalError.code})
        err = InternalError()
    return _error_page(err.status, alert_for(err, g.get("request_id")), err.headers)


# -- the pages ----------------------------------------------------------------------------------


@bp.get("/")
def home():
    return redirect(url_for(".account" if _signed_in() else ".login_page"))


@bp.route("/signup", methods=["GET", "POST"])
def signup_page():
    """Create an account: the identity and its profile, or neither; then sign in."""
    if request.method != "POST":  # GET, and HEAD (GET without the body)
        if _signed_in():
            return redirect(url_for(".account"))
        return _render("signup.html", form=Form.empty(SIGNUP_FIELDS))
    rt = _runtime()
    form = Form.posted(SIGNUP_FIELDS)
    email = None
    try:
        body = _load(SignupSchema(), form.body())
        email = body["email"]
        rt.rate_limits.hit("signup", _client())
        answer, _replayed = accounts.sign_up(_context(), signup.SignupData(**body))
    except ValidationFailed as err:
        # Say everything at once: the password policy too, not only after the rest is fixed.
        password = form.values["password"]
        if password and "password" not in err.details:
            reasons = passwords.policy_violations(password, form.values["email"].strip())
            if reasons:
                err.details["password"] = reasons
        return _failed("signup.html", form, err, email)
    except AuthError as err:
        return _failed("signup.html", form, err, email)
    session = answer["session"]
    if session is None and rt.settings.require_email_confirmation:
        return redirect(url_for(".login_page", confirm_sent=1), 303)
    if session is None:
        # The account exists; only signing in failed. Say so rather than "nothing was created".
        return redirect(url_for(".login_page", created=1), 303)
    _browser().sign_in(session["access_token"], session["refresh_token"])
    return redirect(url_for(".account", welcome=1), 303)


@bp.route("/login", methods=["GET", "POST"])
def login_page():
    """Sign in with email and password."""
    if request.method != "POST":  # GET, and HEAD (GET without the body)
        if _signed_in():
            return redirect(url_for(".account"))
        return _render("login.html", form=Form.empty(LOGIN_FIELDS), notice=_notice("login"))
    rt = _runtime()
    form = Form.posted(LOGIN_FIELDS)
    try:
        body = _load(LoginSchema(), form.body())
        rt.rate_limits.hit("login", _client(), "account:" + body["email"].lower())
        _user, session = accounts.log_in(_context(), body["email"], body["password"])
    except AuthError as err:
        return _failed("login.html", form, err)
    _browser().sign_in(session.access_token, session.refresh_token)
    return redirect(url_for(".account"), 303)


@bp.route("/account", methods=["GET", "POST"])
def account():
    """The profile, and the form that changes the username and display name."""
    me = _signed_in()
    if me is None:
        return redirect(url_for(".login_page"), 303 if request.method == "POST" else 302)
    current = {
        "username": me.user.profile.username or "",
        "display_name": me.user.profile.display_name or "",
    }
    if request.method != "POST":  # GET, and HEAD (GET without the body)
        form = Form.empty(PROFILE_FIELDS, **current)
        return _render("account.html", form=form, user=me.user, notice=_notice("account"))
    form = Form.posted(PROFILE_FIELDS)
    # Send only what changed; a cleared field is sent empty so the schema explains the rule.
    changes = {
        name: value.strip() for name, value in form.values.items() if value.strip() != current[name]
    }
    try:
        body = _load(ProfileUpdateSchema(), changes)
        accounts.update_me(_context(), me.user_id, body)
    except TokenRevoked:
        _browser().sign_out()
        return redirect(url_for(".login_page"), 303)
    except AuthError as err:
        return _failed("account.html", form, err, user=me.user)
    return redirect(url_for(".account", saved=1), 303)


@bp.post("/logout")
def logout():
    """End this session (scope=global: every session of the user) and forget the cookie."""
    browser = _browser()
    scope = "global" if request.form.get("scope") == "global" else "local"
    ids = _token_ids(browser.access_token) if browser.signed_in else None
    browser.sign_out()  # the browser forgets the session whatever happens next
    if ids is not None:
        accounts.log_out(_context(), ids[0], ids[1], scope)
    flag = "signed_out_everywhere" if scope == "global" and ids else "signed_out"
    return redirect(url_for(".login_page", **{flag: 1}), 303)
