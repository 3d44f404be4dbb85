"""Anonymous accounts through the API, in one database and split: created whole or not at all,
upgraded in place, purged when idle."""

from __future__ import annotations

from typing import Any

import pytest

from authsvc import create_app
from authsvc.errors import (
    EmailTaken,
    NotAnonymous,
    RateLimited,
    SignupFailed,
    TokenRevoked,
    UpgradeFailed,
    UsernameTaken,
    WeakPassword,
)
from authsvc.services import anonymous
from tests import faults
from tests.conftest import PASSWORD, app_overrides
from tests.lifecycle import LAYOUTS, Api, Layout, make_layout
from tests.mailbox import link_in

NEW_PASSWORD = "a brand new horse battery"


@pytest.fixture(params=LAYOUTS)
def layout(request: pytest.FixtureRequest, tmp_path: Any, mailbox) -> Layout:
    built = make_layout(request, request.param, tmp_path, mailbox)
    yield built
    built.stores.close()


@pytest.fixture
def api(layout: Layout) -> Api:
    return Api(layout.client)


def count(layout: Layout) -> tuple[int, int]:
    identities = layout.sql(layout.auth_owner, "SELECT count(*) AS n FROM auth.users")[0]["n"]
    profiles = layout.sql(layout.app_owner, "SELECT count(*) AS n FROM public.users")[0]["n"]
    return identities, profiles


def test_an_anonymous_account_has_both_rows_no_email_and_a_session(layout, api):
    data = api.anonymous()
    user, session = data["user"], data["session"]
    assert user["is_anonymous"] is True and user["email"] is None
    assert user["email_confirmed"] is False and session["token_type"] == "bearer"
    identity = layout.identity(id=user["id"])
    assert identity["is_anonymous"] is True and identity["email"] is None
    assert identity["password_hash"] is None and identity["signup_state"] == "complete"
    profile = layout.profile(id=user["id"])
    assert profile is not None and profile["email"] is None
    status, me = api.me(session["access_token"])
    assert status == 200 and me["data"]["user"]["id"] == user["id"]


def test_an_anonymous_account_that_fails_at_its_profile_leaves_neither_row(layout, api):
    with faults.profile_insert_raises(layout.app_owner):
        status, body = api.call("POST", "/anonymous", {})
    assert status == 500 and body["error"]["code"] == SignupFailed.code
    assert body["error"]["details"] == {
        "step": "profile_insert",
        "reason": "trigger_raised",
        "compensated": True,
        "hint": "a trigger on the table raised an error",
    }
    assert count(layout) == (0, 0)


def test_an_anonymous_account_whose_profile_insert_returns_no_row_is_not_created(layout, api):
    with faults.profile_insert_returns_null(layout.app_owner):
        status, body = api.call("POST", "/anonymous", {})
    assert status == 500
    assert (body["error"]["details"]["step"], body["error"]["details"]["reason"]) == (
        "profile_verify",
        "no_row_returned",
    )
    assert count(layout) == (0, 0)


def test_an_upgrade_keeps_the_id_and_the_profile_and_the_new_password_logs_in(layout, api):
    data = api.anonymous()
    user_id, token = data["user"]["id"], data["session"]["access_token"]
    api.call("PATCH", "/me", {"display_name": "Guest Gwen"}, token=token, expect=200)

    _, body = api.call(
        "POST",
        "/upgrade",
        {"email": "Gwen@Example.com", "password": PASSWORD, "username": "gwen"},
        token=token,
        expect=200,
    )
    user = body["data"]["user"]
    assert user["id"] == user_id and user["is_anonymous"] is False
    assert (user["email"], user["username"], user["display_name"]) == (
        "gwen@example.com",
        "gwen",
        "Guest Gwen",
    )  # normalised: the whole address lower-cased
    assert user["email_confirmed"] is False
    identity = layout.identity(id=user_id)
    assert identity["is_anonymous"] is False and identity["email"] == "gwen@example.com"
    assert identity["password_hash"].startswith("$argon2id$")
    assert layout.profile(id=user_id)["email"] == "gwen@example.com"

    # Sessions from before the upgrade end; the answer's session works.
    status, me = api.me(token)
    assert status == 401 and me["error"]["code"] == TokenRevoked.code
    assert api.me(body["data"]["session"]["access_token"])[0] == 200
    logged_in = api.login("gwen@example.com")["data"]["user"]
    assert logged_in["id"] == user_id
    # The new address gets a verification link.
    (mail,) = layout.mailbox.to("gwen@example.com")
    assert link_in(mail).startswith("http://127.0.0.1:8000/verify?token=")


def test_an_upgrade_to_an_email_someone_has_is_409_and_changes_nothing(layout, api):
    api.signup("taken@example.com")
    data = api.anonymous()
    token = data["session"]["access_token"]
    status, body = api.call(
        "POST", "/upgrade", {"email": "TAKEN@example.com", "password": PASSWORD}, token=token
    )
    assert status == 409 and body["error"]["code"] == EmailTaken.code
    identity = layout.identity(id=data["user"]["id"])
    assert identity["is_anonymous"] is True and identity["email"] is None
    assert layout.profile(id=data["user"]["id"])["email"] is None
    assert api.me(token)[0] == 200  # nothing happened: the session goes on


def test_a_taken_username_is_409_and_the_account_stays_anonymous(layout, api):
    api.signup("first@example.com", username="same_name")
    data = api.anonymous()
    status, body = api.call(
        "POST",
        "/upgrade",
        {"email": "second@example.com", "password": PASSWORD, "username": "same_name"},
        token=data["session"]["access_token"],
    )
    assert status == 409 and body["error"]["code"] == UsernameTaken.code
    assert layout.identity(id=data["user"]["id"])["is_anonymous"] is True
    assert layout.profile(id=data["user"]["id"])["email"] is None


def test_an_account_with_a_password_cannot_be_upgraded_again(api):
    token = api.signup("real@example.com")["session"]["access_token"]
    status, body = api.call(
        "POST", "/upgrade", {"email": "other@example.com", "password": PASSWORD}, token=token
    )
    assert status == 409 and body["error"]["code"] == NotAnonymous.code


def test_an_upgrade_with_a_weak_password_is_422_naming_why(layout, api):
    data = api.anonymous()
    status, body = api.call(
        "POST",
        "/upgrade",
        {"email": "weak@example.com", "password": "password"},
        token=data["session"]["access_token"],
    )
    assert status == 422 and body["error"]["code"] == WeakPassword.code
    assert body["error"]["details"]["password"]
    assert layout.identity(id=data["user"]["id"])["is_anonymous"] is True


def test_an_upgrade_that_fails_at_the_identity_puts_the_profile_back(layout, api):
    data = api.anonymous()
    api.call(
        "PATCH", "/me", {"username": "before_up"}, token=data["session"]["access_token"], expect=200
    )
    with faults.trigger(
        layout.auth_owner, "auth.users", "RAISE EXCEPTION 'no upgrades';", when="BEFORE UPDATE"
    ):
        status, body = api.call(
            "POST",
            "/upgrade",
            {"email": "late@example.com", "password": PASSWORD, "username": "after_up"},
            token=data["session"]["access_token"],
        )
    assert status == 500 and body["error"]["code"] == UpgradeFailed.code
    assert body["error"]["details"] == {
        "step": "identity_update",
        "reason": "trigger_raised",
        "compensated": True,
    }
    profile = layout.profile(id=data["user"]["id"])
    assert (profile["email"], profile["username"]) == (None, "before_up")
    assert layout.identity(id=data["user"]["id"])["is_anonymous"] is True
    api.login("late@example.com", expect=401)


def test_an_upgrade_the_account_closing_lands_under_is_401_not_a_500(layout, api):
    """The account's deletion commits while its upgrade is under way (a DELETE /me racing an
    upgrade): the upgrade answers that the account no longer exists, not a 500 telling the
    client to retry, nor 409 NOT_ANONYMOUS."""
    data = api.anonymous()
    user_id = data["user"]["id"]
    # The closing's transaction, not yet committed: the upgrade reads the account, then waits
    # for its rows' locks.
    status, body = faults.racing(
        layout.auth_owner,
        lambda closing: closing.execute("DELETE FROM auth.users WHERE id = %s", (user_id,)),
        lambda: api.call(
            "POST",
            "/upgrade",
            {"email": "late@example.com", "password": PASSWORD},
            token=data["session"]["access_token"],
        ),
        "upgrade",
    )
    assert status == 401 and body["error"]["code"] == TokenRevoked.code, body
    assert layout.identity(id=user_id) is None
    assert not layout.sql(
        layout.app_owner, "SELECT 1 FROM public.users WHERE email = 'late@example.com'"
    )


def test_an_upgrade_with_no_token_is_401(api):
    status, body = api.call("POST", "/upgrade", {"email": "x@example.com", "password": PASSWORD})
    assert status == 401


# -- purge ------------------------------------------------------------------------------------


def age(layout: Layout, user_id: str, days: int, sessions_too: bool = True) -> None:
    """Move an account's creation, last sign-in and (optionally) session activity back."""
    layout.sql(
        layout.auth_owner,
        "UPDATE auth.users SET created_at = now() - make_interval(days => %s), "
        "last_sign_in_at = NULL WHERE id = %s",
        (days, user_id),
    )
    if sessions_too:
        layout.sql(
            layout.auth_owner,
            "UPDATE authsvc.sessions SET created_at = now() - make_interval(days => %s), "
            "refreshed_at = NULL WHERE user_id = %s",
            (days, user_id),
        )


def test_idle_anonymous_accounts_are_purged_with_both_rows(layout, api):
    idle = api.anonymous()["user"]["id"]
    fresh = api.anonymous()["user"]["id"]
    used = api.anonymous()
    upgraded = api.anonymous()
    api.call(
        "POST",
        "/upgrade",
        {"email": "kept@example.com", "password": PASSWORD},
        token=upgraded["session"]["access_token"],
        expect=200,
    )
    age(layout, idle, 31)
    age(layout, used["user"]["id"], 31, sessions_too=False)  # its session is still in use
    age(layout, upgraded["user"]["id"], 31)

    counts = anonymous.purge_idle(layout.stores, layout.settings)

    assert counts == {"anonymous_removed": 1, "profiles_removed": 1}
    assert layout.identity(id=idle) is None and layout.profile(id=idle) is None
    assert (
        layout.sql(layout.auth_owner, "SELECT 1 FROM authsvc.sessions WHERE user_id = %s", (idle,))
        == []
    )
    for kept in (fresh, used["user"]["id"], upgraded["user"]["id"]):
        assert layout.identity(id=kept) is not None and layout.profile(id=kept) is not None
    assert anonymous.purge_idle(layout.stores, layout.settings) == {
        "anonymous_removed": 0,
        "profiles_removed": 0,
    }


def test_the_idle_period_is_the_setting(request, layout, api, tmp_path, mailbox):
    user_id = api.anonymous()["user"]["id"]
    age(layout, user_id, 3)
    assert anonymous.purge_idle(layout.stores, layout.settings)["anonymous_removed"] == 0
    short = make_layout(
        request,
        layout.name,
        tmp_path / "short",
        mailbox,
        clean=False,
        AUTHSVC_ANONYMOUS_MAX_IDLE_DAYS="2",
    )
    try:
        assert short.settings.anonymous_max_idle_days == 2
        assert anonymous.purge_idle(short.stores, short.settings)["anonymous_removed"] == 1
    finally:
        short.stores.close()
    assert layout.identity(id=user_id) is None and layout.profile(id=user_id) is None


# -- rate limits ------------------------------------------------------------------------------


def test_anonymous_signups_are_limited_harder_than_signups(database_url, tmp_path):
    app = create_app(app_overrides(database_url, tmp_path, AUTHSVC_RATE_LIMITS="on"))
    try:
        api = Api(app.test_client())
        settings = app.extensions["authsvc"].settings
        assert settings.rate_limit_anonymous == "3 per minute;10 per hour"
        statuses = [api.call("POST", "/anonymous", {})[0] for _ in range(4)]
        assert statuses == [201, 201, 201, 429]
        _, body = api.call("POST", "/anonymous", {})
        assert body["error"]["code"] == RateLimited.code
        # Signups from the same address still have their own, larger budget.
        for n in range(4):
            api.signup(f"person{n}@example.com")
    finally:
        app.extensions["authsvc"].stores.close()


def test_an_upgrade_whose_undoing_fails_too_says_so_and_the_account_stays_anonymous(layout, api):
    if layout.name == "one_database":
        pytest.skip("in one database the upgrade is one transaction: undoing is a rollback")
    data = api.anonymous()
    user_id = data["user"]["id"]
    with (
        faults.trigger(
            layout.auth_owner, "auth.users", "RAISE EXCEPTION 'no upgrades';", when="BEFORE UPDATE"
        ),
        faults.trigger(
            layout.app_owner,
            "public.users",
            "IF NEW.email IS NULL THEN RAISE EXCEPTION 'no undo'; END IF; RETURN NEW;",
            when="BEFORE UPDATE",
            name="authsvc_fault_undo",
        ),
    ):
        status, body = api.call(
            "POST",
            "/upgrade",
            {"email": "stuck@example.com", "password": PASSWORD},
            token=data["session"]["access_token"],
        )
    assert status == 500 and body["error"]["code"] == UpgradeFailed.code
    assert body["error"]["details"]["compensated"] is False
    # What remains is the documented leftover: the profile shows the new email, the account
    # itself is still anonymous, nobody can log in with that email, and a retry finishes it.
    assert layout.profile(id=user_id)["email"] == "stuck@example.com"
    assert layout.identity(id=user_id)["is_anonymous"] is True
    api.login("stuck@example.com", expect=401)
    api.call(
        "POST",
        "/upgrade",
        {"email": "stuck@example.com", "password": PASSWORD},
        token=data["session"]["access_token"],
        expect=200,
    )
    assert api.login("stuck@example.com")["data"]["user"]["id"] == user_id
