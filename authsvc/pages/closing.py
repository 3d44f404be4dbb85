"""/account/delete: the signed-in person closes their account, through the same service as
DELETE /api/v1/auth/me (sessions first, then both rows); /account/deleted says it is done.

The current password confirms it is them (an anonymous account has none: its session is its
proof). A wrong password counts against the login limits.
"""

from __future__ import annotations

from flask import g, redirect, request, url_for

from authsvc.errors import (
    AuthError,
    DeletionFailed,
    InvalidCredentials,
    ReauthenticationRequired,
    TokenRevoked,
    ValidationFailed,
)
from authsvc.pages.forms import Form
from authsvc.pages.messages import Alert
from authsvc.pages.views import (
    _browser,
    _client,
    _context,
    _error_page,
    _failed,
    _render,
    _runtime,
    _signed_in,
    bp,
)
from authsvc.services import closing

DELETE_FIELDS = ("password",)
TEMPLATE = "account_delete.html"

# What went wrong, in words, by the step DELETION_FAILED names.
_STEPS = {
    "identity_delete": "removing your sign-in details",
    "profile_delete": "removing your profile",
    "commit": "finishing the deletion",
}


def _wrong_password(form: Form, err: AuthError, **context):
    g.auth_error = err
    form.errors = {"password": ["That is not your current password."]}
    form.alert = Alert(
        "Your account was not deleted",
        ["Check your current password and try again."],
        err.code,
        g.get("request_id"),
    )
    return _render(TEMPLATE, err.status, err.headers, form=form, **context)


def _not_deleted(err: DeletionFailed):
    """Nothing was removed, but the sessions had ended first: say so, signed out."""
    _browser().sign_out()
    step = _STEPS.get(err.details.get("step", ""), "deleting your account")
    return _error_page(
        err.status,
        Alert(
            "We couldn't delete your account",
            [
                f"Something went wrong while {step}. Nothing was removed.",
                "You have been signed out everywhere. Log in again to try once more.",
            ],
            err.code,
            g.get("request_id"),
        ),
    )


@bp.route("/account/delete", methods=["GET", "POST"])
def delete_account():
    """Confirm with the current password, then close the account and sign out."""
    me = _signed_in()
    if me is None:
        return redirect(url_for(".login_page"), 303 if request.method == "POST" else 302)
    anonymous = me.user.identity.is_anonymous
    if request.method != "POST":  # GET, and HEAD (GET without the body)
        return _render(TEMPLATE, form=Form.empty(DELETE_FIELDS), user=me.user)
    form = Form.posted(DELETE_FIELDS)
    password = form.values["password"] or None  # exactly as typed
    try:
        if password is None and not anonymous:
            raise ValidationFailed(details={"password": ["Enter your current password."]})
        if password is not None:
            email = me.user.identity.email  # login's key for this account, one budget
            account = f"account:{email.lower()}" if email else f"account:{me.user_id}"
            _runtime().rate_limits.hit("login", _client(), account)
        closing.close_own_account(_context(), me.user_id, me.session_id, password)
    except InvalidCredentials as err:
        return _wrong_password(form, err, user=me.user)
    except (TokenRevoked, ReauthenticationRequired):
        _browser().sign_out()
        return redirect(url_for(".login_page"), 303)
    except DeletionFailed as err:
        return _not_deleted(err)
    except AuthError as err:
        return _failed(TEMPLATE, form, err, user=me.user)
    _browser().sign_out()
    return redirect(url_for(".account_deleted"), 303)


@bp.get("/account/deleted")
def account_deleted():
    """Said once the account is gone (nobody is signed in any more)."""
    return _render("account_deleted.html")
