"""The account lifecycle's pages, on the pages' blueprint: guest accounts and saving them,
/verify, /forgot, /reset, changing the password on /account, and /dev/outbox (development).

They call the same services as the JSON API, with the same rate limits, and keep the pages'
rules: forms post back with the CSRF token, errors sit next to their field, no script runs.
"""

from __future__ import annotations

import re
from typing import Any

from flask import g, redirect, request, url_for
from werkzeug.exceptions import NotFound

from authsvc.api.lifecycle_schemas import EmailSchema, UpgradeSchema
from authsvc.errors import (
    AuthError,
    EmailNotConfirmed,
    InvalidCredentials,
    LinkInvalid,
    TokenRevoked,
    ValidationFailed,
    WeakPassword,
)
from authsvc.mail import OUTBOX_DIR
from authsvc.mail.outbox import read_outbox
from authsvc.pages.forms import (
    EMAIL_FIELDS,
    PASSWORD_FIELDS,
    PROFILE_FIELDS,
    RESET_FIELDS,
    UPGRADE_FIELDS,
    Form,
)
from authsvc.pages.messages import alert_for
from authsvc.pages.views import (
    _browser,
    _client,
    _context,
    _failed,
    _load,
    _render,
    _runtime,
    _signed_in,
    bp,
)
from authsvc.services import anonymous, links

_URL = re.compile(r"(https?://\S+)")


@bp.context_processor
def _lifecycle_globals() -> dict[str, Any]:
    """Empty forms for the account page's extra cards (a view's own values win)."""
    return {
        "password_form": Form.empty(PASSWORD_FIELDS),
        "not_confirmed_code": EmailNotConfirmed.code,
    }


def _limit(name: str, *keys: str) -> None:
    _runtime().rate_limits.hit(name, *keys)


def _account_page(me: Any, status: int = 200, **context: Any):
    profile = me.user.profile
    form = Form.empty(PROFILE_FIELDS, username=profile.username, display_name=profile.display_name)
    return _render("account.html", status, form=form, user=me.user, **context)


# -- guest accounts -----------------------------------------------------------------------------


@bp.post("/anonymous")
def anonymous_page():
    """Start a guest account (no email, no password) and sign this browser in to it."""
    _limit("anonymous", _client())
    _user, session = anonymous.start(_context())
    _browser().sign_in(session.access_token, session.refresh_token)
    return redirect(url_for(".account", guest=1), 303)


@bp.route("/account/upgrade", methods=["GET", "POST"])
def upgrade_page():
    """Save a guest account: give it an email and a password (same account, same profile)."""
    me = _signed_in()
    if me is None:
        return redirect(url_for(".login_page"), 303 if request.method == "POST" else 302)
    if not me.user.identity.is_anonymous:
        return redirect(url_for(".account"))
    if request.method != "POST":  # GET, and HEAD (GET without the body)
        return _render("upgrade.html", form=Form.empty(UPGRADE_FIELDS), user=me.user)
    form = Form.posted(UPGRADE_FIELDS)
    try:
        body = _load(UpgradeSchema(), form.body())
        _limit("signup", _client())
        _user, session = anonymous.upgrade(
            _context(), me.user_id, body["email"], body["password"], body.get("username")
        )
    except AuthError as err:
        return _failed("upgrade.html", form, err, user=me.user)
    _browser().sign_in(session.access_token, session.refresh_token)
    return redirect(url_for(".account", upgraded=1), 303)


# -- email verification -------------------------------------------------------------------------


@bp.get("/verify")
def verify_page():
    """The link in the verification mail: confirms the address (the link works once)."""
    token = request.args.get("token", "")
    try:
        if not 16 <= len(token) <= 256:
            raise LinkInvalid()
        _limit("verify", _client())
        links.verify_email(_context(), token)
    except AuthError as err:
        g.auth_error = err
        alert = alert_for(err, g.get("request_id"))
        return _render(
            "verify.html", err.status, err.headers, alert=alert, form=Form.empty(EMAIL_FIELDS)
        )
    signed_in = _signed_in() is not None
    return _render(
        "verify.html", confirmed=True, signed_in=signed_in, form=Form.empty(EMAIL_FIELDS)
    )


@bp.post("/verify/resend")
def resend_page():
    """Mail a new confirmation link: to the signed-in account, or to the address typed."""
    me = _signed_in()
    if me is not None and me.user.identity.email:
        email = me.user.identity.email
    else:
        form = Form.posted(EMAIL_FIELDS)
        try:
            email = _load(EmailSchema(), form.body())["email"]
        except AuthError as err:
            return _failed("verify.html", form, err)
    _limit("verify", _client(), "account:" + email.lower())
    links.resend_verification(_context(), email)
    page = ".account" if me is not None else ".login_page"
    return redirect(url_for(page, verification_sent=1), 303)


# -- forgot and reset ---------------------------------------------------------------------------


@bp.route("/forgot", methods=["GET", "POST"])
def forgot_page():
    """Ask for a password reset link; the answer is the same whether or not the address has
    an account."""
    if request.method != "POST":  # GET, and HEAD (GET without the body)
        return _render("forgot.html", form=Form.empty(EMAIL_FIELDS), sent="sent" in request.args)
    form = Form.posted(EMAIL_FIELDS)
    try:
        email = _load(EmailSchema(), form.body())["email"]
        _limit("password_forgot", _client(), "account:" + email.lower())
    except AuthError as err:
        return _failed("forgot.html", form, err)
    links.forgot_password(_context(), email)
    return redirect(url_for(".forgot_page", sent=1), 303)


def _reset_link_failed(err: AuthError):
    g.auth_error = err
    return _render(
        "reset.html",
        err.status,
        err.headers,
        form=Form.empty(RESET_FIELDS),
        link_alert=alert_for(err, g.get("request_id")),
        token="",
    )


@bp.route("/reset", methods=["GET", "POST"])
def reset_page():
    """The link in the reset mail: choose a new password (every session then ends)."""
    source = request.form if request.method == "POST" else request.args
    token = source.get("token", "")
    ctx = _context()
    try:
        if not 16 <= len(token) <= 256:
            raise LinkInvalid()
        _limit("password_reset", _client())
        owner = links.reset_owner(ctx, token)
    except AuthError as err:
        return _reset_link_failed(err)
    if request.method != "POST":  # GET, and HEAD (GET without the body)
        return _render("reset.html", form=Form.empty(RESET_FIELDS), token=token)
    form = Form.posted(RESET_FIELDS)
    try:
        _limit("password_reset", f"account:{owner}")
        password = form.values["password"]
        if not password:
            raise ValidationFailed(details={"password": ["Enter a new password."]})
        links.reset_password(ctx, token, password)
    except LinkInvalid as err:
        return _reset_link_failed(err)
    except AuthError as err:
        return _failed("reset.html", form, err, token=token)
    _browser().sign_out()
    return redirect(url_for(".login_page", password_reset=1), 303)


# -- changing the password on the account page --------------------------------------------------


@bp.post("/account/password")
def change_password_page():
    """Change the password with the current one: this browser keeps a fresh session, every
    other session ends."""
    me = _signed_in()
    if me is None:
        return redirect(url_for(".login_page"), 303)
    form = Form.posted(PASSWORD_FIELDS)
    current, new = form.values["current_password"], form.values["new_password"]
    try:
        missing = {name: ["Enter a password."] for name in PASSWORD_FIELDS if not form.values[name]}
        if missing:
            raise ValidationFailed(details=missing)
        session = links.change_password(_context(), me.user_id, current, new)
    except TokenRevoked:
        _browser().sign_out()
        return redirect(url_for(".login_page"), 303)
    except InvalidCredentials:
        err = ValidationFailed(details={"current_password": ["This is not your current password."]})
        return _password_failed(me, form, err)
    except WeakPassword as err:
        details = {"new_password": [str(m) for m in err.details.get("password", [])]}
        return _password_failed(me, form, ValidationFailed(details=details))
    except AuthError as err:
        return _password_failed(me, form, err)
    _browser().rotate(session.access_token, session.refresh_token)
    return redirect(url_for(".account", password_changed=1), 303)


def _password_failed(me: Any, form: Form, err: AuthError):
    g.auth_error = err
    form.fail(err)
    return _account_page(me, err.status, password_form=form)


# -- the development outbox ---------------------------------------------------------------------


def _linked(text: str) -> list[list[tuple[str, str | None]]]:
    """Each line of `text` as (text, link or None) pieces."""
    lines = []
    for line in text.splitlines():
        parts = _URL.split(line)
        lines.append([(part, part if _URL.fullmatch(part) else None) for part in parts if part])
    return lines


@bp.get("/dev/outbox")
def outbox_page():
    """Development only: the mail the service sent, newest first (404 anywhere else)."""
    settings = _runtime().settings
    if settings.production:
        raise NotFound()
    messages = []
    for message in read_outbox(settings.data_dir / OUTBOX_DIR):
        body = message.get_body(preferencelist=("plain",))
        text = body.get_content() if body is not None else ""
        messages.append(
            {
                "to": message["To"],
                "subject": message["Subject"],
                "date": message["Date"],
                "lines": _linked(text),
            }
        )
    return _render("outbox.html", messages=messages, smtp=bool(settings.smtp_url))
