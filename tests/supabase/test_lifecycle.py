"""The account lifecycle in Supabase mode, through the HTTP doubles of Supabase Auth and
PostgREST (tests/supabase/fake.py), sessions and reset tokens in real Postgres, mail through a
real SMTP server on loopback."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from authsvc import create_app
from authsvc.errors import (
    EmailNotConfirmed,
    EmailTaken,
    LinkInvalid,
    SignupFailed,
    TokenRevoked,
    UpgradeFailed,
)
from authsvc.services import anonymous, reconcile
from tests.conftest import PASSWORD
from tests.lifecycle import Api
from tests.mailbox import link_in, token_in
from tests.supabase.conftest import supabase_env
from tests.supabase.fake import ANON_KEY, SERVICE_KEY, auth_error, rls_violation

NEW_PASSWORD = "a brand new horse battery"


@pytest.fixture
def app(sessions_url: str, tmp_path: Any, fake, mailbox):
    app = create_app(
        supabase_env(sessions_url, tmp_path, SMTP_URL=mailbox.url, AUTHSVC_MAIL_RETRY_MS="20")
    )
    yield app
    app.extensions["authsvc"].stores.close()


@pytest.fixture
def api(app) -> Api:
    return Api(app.test_client())


def drain(app) -> None:
    assert app.extensions["authsvc"].mail.drain(15)


# -- anonymous accounts -------------------------------------------------------------------------


def test_an_anonymous_account_is_a_supabase_anonymous_user_with_its_profile(api, fake, sessions_db):
    data = api.anonymous()
    user_id = data["user"]["id"]
    (signup,) = fake.requests("signup")
    assert signup.headers["apikey"] == ANON_KEY
    assert json.loads(signup.content) == {
        "data": {},
        "gotrue_meta_security": {"captcha_token": None},
    }
    assert fake.users[user_id]["is_anonymous"] is True  # the id is Supabase Auth's
    assert fake.profiles[user_id]["email"] is None
    assert fake.state(user_id) == "complete"
    assert fake.sessions == {} and len(fake.revoked) == 1  # Supabase's own session revoked
    assert data["user"]["is_anonymous"] is True and data["user"]["email"] is None
    assert api.me(data["session"]["access_token"])[0] == 200
    row = sessions_db.execute("SELECT user_id FROM authsvc.sessions").fetchone()
    assert str(row["user_id"]) == user_id


def test_anonymous_sign_ins_disabled_in_the_project_say_what_to_enable(api, fake):
    fake.anonymous_sign_ins = False
    status, body = api.call("POST", "/anonymous", {})
    assert status == 500 and body["error"]["code"] == SignupFailed.code
    details = body["error"]["details"]
    assert (details["step"], details["reason"], details["compensated"]) == (
        "identity_create",
        "auth_refused",
        True,
    )
    assert "enable them" in details["hint"]
    assert fake.users == {} and fake.profiles == {}


def test_a_refused_profile_removes_the_anonymous_user(api, fake):
    fake.fail("insert_profile", rls_violation())
    status, body = api.call("POST", "/anonymous", {})
    assert status == 500
    assert body["error"]["details"]["step"] == "profile_insert"
    assert body["error"]["details"]["compensated"] is True
    assert fake.users == {} and fake.profiles == {}
    assert len(fake.requests("delete_user")) == 1


def test_a_lost_reply_at_the_anonymous_sign_in_is_told_and_reconcile_removes_the_user(
    app, api, fake
):
    def created_then_lost(request: httpx.Request) -> httpx.Response:
        fake._signup(request)
        raise httpx.ReadTimeout("reply lost", request=request)

    fake.fail("signup", created_then_lost)
    status, body = api.call("POST", "/anonymous", {})
    assert status == 500 and body["error"]["details"]["compensated"] is False
    (left,) = fake.users
    stores = app.extensions["authsvc"].stores
    assert stores.identities.get(left).signup_state == "pending"  # never marked complete
    report, remaining = reconcile.run(stores, 0, repair_drift=True)
    assert not remaining and report["repaired"]["identities_removed"] == 1
    assert fake.users == {}


def test_an_upgrade_gives_the_same_user_an_email_and_password_unconfirmed(app, api, fake, mailbox):
    data = api.anonymous()
    user_id, token = data["user"]["id"], data["session"]["access_token"]
    _, body = api.call(
        "POST",
        "/upgrade",
        {"email": "Up@Example.com", "password": PASSWORD, "username": "upper"},
        token=token,
        expect=200,
    )
    assert body["data"]["user"]["id"] == user_id and body["data"]["user"]["is_anonymous"] is False
    update = fake.bodies("update_user")[-1]
    assert update == {
        "email": "up@example.com",
        "password": PASSWORD,
        "app_metadata": {"authsvc_anonymous": False},
    }  # no email_confirm
    assert fake.users[user_id]["email"] == "up@example.com"
    assert "email_confirmed_at" not in fake.users[user_id]
    assert (fake.profiles[user_id]["email"], fake.profiles[user_id]["username"]) == (
        "up@example.com",
        "upper",
    )
    # The profile first, the user last: the user's update is what makes the upgrade happen.
    assert fake.sequence.index("update_profile") < len(fake.sequence) - 1 - fake.sequence[
        ::-1
    ].index("update_user")
    assert api.me(token)[1]["error"]["code"] == TokenRevoked.code
    assert api.login("up@example.com")["data"]["user"]["id"] == user_id
    (mail,) = mailbox.to("up@example.com")  # Supabase Auth keeps addresses lower-cased
    assert "/verify?token=" in link_in(mail)


def test_an_upgrade_to_a_taken_email_is_409_before_anything_is_written(api, fake):
    api.signup("taken@example.com")
    data = api.anonymous()
    writes = len(fake.requests("update_user"))
    status, body = api.call(
        "POST",
        "/upgrade",
        {"email": "taken@example.com", "password": PASSWORD},
        token=data["session"]["access_token"],
    )
    assert status == 409 and body["error"]["code"] == EmailTaken.code
    assert len(fake.requests("update_user")) == writes
    assert fake.profiles[data["user"]["id"]]["email"] is None


def test_an_upgrade_refused_by_supabase_auth_puts_the_profile_back(api, fake):
    data = api.anonymous()
    fake.fail("update_user", auth_error(500, "unexpected_failure", "Error updating user"))
    status, body = api.call(
        "POST",
        "/upgrade",
        {"email": "late@example.com", "password": PASSWORD},
        token=data["session"]["access_token"],
    )
    assert status == 500 and body["error"]["code"] == UpgradeFailed.code
    assert body["error"]["details"] == {
        "step": "identity_update",
        "reason": "auth_server_error",
        "compensated": True,
    }
    assert fake.profiles[data["user"]["id"]]["email"] is None
    assert fake.users[data["user"]["id"]]["is_anonymous"] is True


# -- verification -------------------------------------------------------------------------------


def test_verification_uses_supabase_auths_own_link_mailed_by_authsvc(app, api, fake, mailbox):
    user_id = api.signup("ver@example.com")["user"]["id"]
    (mail,) = mailbox.to("ver@example.com")
    (generate,) = fake.requests("generate_link")
    assert generate.headers["apikey"] == SERVICE_KEY
    assert json.loads(generate.content)["type"] == "signup"
    token = token_in(mail)  # Supabase Auth's hashed token, carried to authsvc's own page
    assert link_in(mail).startswith("http://127.0.0.1:8000/verify?token=")

    _, body = api.call("POST", "/verify", {"token": token}, expect=200)
    assert body["data"]["user"]["email_confirmed"] is True
    (verify,) = fake.requests("verify")
    assert verify.headers["apikey"] == ANON_KEY
    assert json.loads(verify.content)["token_hash"] == token
    assert fake.users[user_id].get("email_confirmed_at") and fake.sessions == {}
    status, again = api.call("POST", "/verify", {"token": token})
    assert status == 400 and again["error"]["code"] == LinkInvalid.code


def test_login_with_an_unconfirmed_address_follows_authsvcs_setting(
    sessions_url, tmp_path, fake, mailbox
):
    strict = create_app(
        supabase_env(
            sessions_url, tmp_path, SMTP_URL=mailbox.url, AUTHSVC_REQUIRE_EMAIL_CONFIRMATION="on"
        )
    )
    try:
        api = Api(strict.test_client())
        api.signup("early@example.com")
        wrong = api.login("early@example.com", "not the password at all", expect=401)
        assert wrong["error"]["code"] == "INVALID_CREDENTIALS"
        early = api.login("early@example.com", expect=403)
        assert early["error"]["code"] == EmailNotConfirmed.code
        (mail,) = mailbox.to("early@example.com")
        api.call("POST", "/verify", {"token": token_in(mail)}, expect=200)
        assert api.login("early@example.com")["data"]["user"]["email_confirmed"] is True
    finally:
        strict.extensions["authsvc"].stores.close()


# -- passwords ----------------------------------------------------------------------------------


def test_forgot_and_reset_set_the_password_in_supabase_and_end_every_session(
    app, api, fake, mailbox, sessions_db
):
    user_id = api.signup("res@example.com")["user"]["id"]
    api.call("POST", "/password/forgot", {"email": "res@example.com"}, expect=202)
    api.call("POST", "/password/forgot", {"email": "nobody@example.com"}, expect=202)
    drain(app)
    (reset,) = [m for m in mailbox.to("res@example.com") if "Reset" in m["Subject"]]
    api.call(
        "POST", "/password/reset", {"token": token_in(reset), "password": NEW_PASSWORD}, expect=200
    )
    assert fake.bodies("update_user")[-1] == {"password": NEW_PASSWORD, "email_confirm": True}
    open_sessions = sessions_db.execute(
        "SELECT count(*) AS n FROM authsvc.sessions WHERE user_id = %s AND revoked_at IS NULL",
        (user_id,),
    ).fetchone()["n"]
    assert open_sessions == 0
    assert fake.users[user_id].get("email_confirmed_at")
    api.login("res@example.com", expect=401)
    assert api.login("res@example.com", NEW_PASSWORD)["data"]["user"]["id"] == user_id


def test_a_reset_supabase_refuses_keeps_the_link_usable(app, api, fake, mailbox):
    api.signup("weak@example.com")
    api.call("POST", "/password/forgot", {"email": "weak@example.com"}, expect=202)
    drain(app)
    (reset,) = [m for m in mailbox.to("weak@example.com") if "Reset" in m["Subject"]]
    fake.fail(
        "update_user",
        auth_error(
            422,
            "weak_password",
            "Password is known to be weak",
            weak_password={"reasons": ["pwned"]},
        ),
    )
    status, body = api.call(
        "POST", "/password/reset", {"token": token_in(reset), "password": NEW_PASSWORD}
    )
    assert status == 422 and body["error"]["code"] == "WEAK_PASSWORD"
    api.call(
        "POST", "/password/reset", {"token": token_in(reset), "password": NEW_PASSWORD}, expect=200
    )


def test_a_change_checks_the_current_password_with_supabase(api, fake):
    data = api.signup("chg@example.com")
    token = data["session"]["access_token"]
    status, _ = api.call(
        "POST",
        "/password",
        {"current_password": "not it at all", "password": NEW_PASSWORD},
        token=token,
    )
    assert status == 401
    _, body = api.call(
        "POST",
        "/password",
        {"current_password": PASSWORD, "password": NEW_PASSWORD},
        token=token,
        expect=200,
    )
    assert fake.bodies("update_user")[-1] == {"password": NEW_PASSWORD}
    assert api.me(token)[0] == 401
    assert api.me(body["data"]["session"]["access_token"])[0] == 200
    assert api.login("chg@example.com", NEW_PASSWORD)["data"]["user"]["id"] == data["user"]["id"]


# -- purge --------------------------------------------------------------------------------------


def test_idle_anonymous_users_are_purged_from_supabase(app, api, fake, sessions_db):
    idle = api.anonymous()["user"]["id"]
    fresh = api.anonymous()["user"]["id"]
    old = (datetime.now(UTC) - timedelta(days=31)).isoformat().replace("+00:00", "Z")
    fake.users[idle]["created_at"] = fake.users[idle]["last_sign_in_at"] = old
    sessions_db.execute(
        "UPDATE authsvc.sessions SET created_at = now() - interval '31 days' WHERE user_id = %s",
        (idle,),
    )
    runtime = app.extensions["authsvc"]
    counts = anonymous.purge_idle(runtime.stores, runtime.settings)
    assert counts["anonymous_removed"] == 1
    assert idle not in fake.users and idle not in fake.profiles
    assert fresh in fake.users and fresh in fake.profiles
