"""Mailed links and passwords through the API, in one database and split, with a real SMTP
server on loopback: verification, resend, forgot, reset, change."""

from __future__ import annotations

from typing import Any

import pytest

from authsvc import create_app
from authsvc.errors import (
    EmailNotConfirmed,
    InvalidCredentials,
    LinkInvalid,
    RateLimited,
    TokenRevoked,
    WeakPassword,
)
from authsvc.services import links
from tests.conftest import PASSWORD, app_overrides
from tests.lifecycle import LAYOUTS, Api, Layout, make_layout
from tests.mailbox import link_in, token_in

NEW_PASSWORD = "a brand new horse battery"


@pytest.fixture(params=LAYOUTS)
def layout(request: pytest.FixtureRequest, tmp_path: Any, mailbox) -> Layout:
    built = make_layout(
        request,
        request.param,
        tmp_path,
        mailbox,
        AUTHSVC_REQUIRE_EMAIL_CONFIRMATION="on",
        AUTHSVC_PUBLIC_URL="https://auth.example.com",
    )
    yield built
    built.stores.close()


@pytest.fixture
def api(layout: Layout) -> Api:
    return Api(layout.client)


def tokens_of(layout: Layout, user_id: str) -> list[dict[str, Any]]:
    return layout.sql(
        layout.auth_owner,
        "SELECT * FROM authsvc.one_time_tokens WHERE user_id = %s ORDER BY created_at",
        (user_id,),
    )


# -- verification -----------------------------------------------------------------------------


def test_signup_mails_a_link_that_confirms_the_email_once(layout, api):
    user = api.signup("ada@example.com")["user"]
    (mail,) = layout.mailbox.to("ada@example.com")
    assert mail["Subject"] == "Confirm your email address"
    assert mail["From"] == "authsvc <no-reply@localhost>"
    assert link_in(mail).startswith("https://auth.example.com/verify?token=")
    token = token_in(mail)
    (row,) = tokens_of(layout, user["id"])
    assert row["purpose"] == "email_verification" and row["email"] == "ada@example.com"
    assert token.encode() not in bytes(row["token_hash"]) and len(row["token_hash"]) == 32

    _, body = api.call("POST", "/verify", {"token": token}, expect=200)
    assert body["data"]["user"]["email_confirmed"] is True
    assert layout.identity(id=user["id"])["email_confirmed_at"] is not None
    status, again = api.call("POST", "/verify", {"token": token})
    assert status == 400 and again["error"]["code"] == LinkInvalid.code


def test_login_waits_for_the_confirmation_only_after_a_correct_password(layout, api):
    assert api.signup("bo@example.com")["session"] is None  # no session before confirming
    wrong = api.login("bo@example.com", "not the password at all", expect=401)
    assert wrong["error"]["code"] == InvalidCredentials.code
    early = api.login("bo@example.com", expect=403)
    assert early["error"]["code"] == EmailNotConfirmed.code
    (mail,) = layout.mailbox.to("bo@example.com")
    api.call("POST", "/verify", {"token": token_in(mail)}, expect=200)
    assert api.login("bo@example.com")["data"]["user"]["email_confirmed"] is True


def test_unknown_and_expired_tokens_are_link_invalid(layout, api):
    user = api.signup("cy@example.com")["user"]
    (mail,) = layout.mailbox.to("cy@example.com")
    status, body = api.call("POST", "/verify", {"token": "x" * 43})
    assert status == 400 and body["error"]["code"] == LinkInvalid.code
    layout.sql(
        layout.auth_owner,
        "UPDATE authsvc.one_time_tokens SET expires_at = now() "
        "- interval '1 second' WHERE user_id = %s",
        (user["id"],),
    )
    status, body = api.call("POST", "/verify", {"token": token_in(mail)})
    assert status == 400 and body["error"]["code"] == LinkInvalid.code
    assert layout.identity(id=user["id"])["email_confirmed_at"] is None


def test_resend_answers_202_for_anyone_and_mails_only_unconfirmed_accounts(layout, api):
    api.signup("dee@example.com")
    layout.mailbox.to("dee@example.com")
    for email in ("dee@example.com", "nobody@example.com"):
        status, body = api.call("POST", "/verify/resend", {"email": email})
        assert (status, body) == (202, {"success": True, "data": {}})
    layout.drain()
    assert len(layout.mailbox.to("dee@example.com")) == 2
    assert layout.mailbox.to("nobody@example.com", timeout=0) == []
    first, second = layout.mailbox.to("dee@example.com")
    # Both links work, once each: each proves the same address.
    api.call("POST", "/verify", {"token": token_in(second)}, expect=200)
    api.call("POST", "/verify", {"token": token_in(first)}, expect=200)
    api.call("POST", "/verify", {"token": token_in(first)}, expect=400)
    api.call("POST", "/verify/resend", {"email": "dee@example.com"}, expect=202)
    layout.drain()
    assert len(layout.mailbox.to("dee@example.com")) == 2  # nothing left to confirm


def test_a_link_for_an_address_changed_since_confirms_nothing(layout, api):
    anon = api.anonymous()
    _, up = api.call(
        "POST",
        "/upgrade",
        {"email": "old@example.com", "password": PASSWORD},
        token=anon["session"]["access_token"],
        expect=200,
    )
    (mail,) = layout.mailbox.to("old@example.com")
    layout.sql(
        layout.auth_owner,
        "UPDATE auth.users SET email = 'moved@example.com' WHERE id = %s",
        (anon["user"]["id"],),
    )
    status, body = api.call("POST", "/verify", {"token": token_in(mail)})
    assert status == 400 and body["error"]["code"] == LinkInvalid.code
    assert layout.identity(id=anon["user"]["id"])["email_confirmed_at"] is None


# -- forgot and reset -------------------------------------------------------------------------


def confirmed(layout: Layout, api: Api, email: str) -> dict[str, Any]:
    user = api.signup(email)["user"]
    api.call("POST", "/verify", {"token": token_in(layout.mailbox.to(email)[0])}, expect=200)
    return user


def test_forgot_answers_202_whether_or_not_the_email_exists(layout, api):
    confirmed(layout, api, "eve@example.com")
    known = api.call("POST", "/password/forgot", {"email": "EVE@example.com"})
    unknown = api.call("POST", "/password/forgot", {"email": "ghost@example.com"})
    assert known == unknown == (202, {"success": True, "data": {}})
    layout.drain()
    resets = [m for m in layout.mailbox.to("eve@example.com") if "Reset" in m["Subject"]]
    assert len(resets) == 1 and "30 minutes" in resets[0].get_content()
    assert link_in(resets[0]).startswith("https://auth.example.com/reset?token=")
    assert layout.mailbox.to("ghost@example.com", timeout=0) == []


def test_a_reset_sets_the_password_revokes_every_session_and_confirms_the_email(layout, api):
    user = confirmed(layout, api, "fay@example.com")
    api.login("fay@example.com")
    api.call("POST", "/password/forgot", {"email": "fay@example.com"}, expect=202)
    layout.drain()
    (reset,) = [m for m in layout.mailbox.to("fay@example.com") if "Reset" in m["Subject"]]
    token = token_in(reset)
    sessions = layout.sql(
        layout.auth_owner, "SELECT id FROM authsvc.sessions WHERE user_id = %s", (user["id"],)
    )
    assert len(sessions) == 1  # the login's

    status, body = api.call("POST", "/password/reset", {"token": token, "password": "password"})
    assert status == 422 and body["error"]["code"] == WeakPassword.code  # nothing spent
    api.call("POST", "/password/reset", {"token": token, "password": NEW_PASSWORD}, expect=200)

    assert (
        layout.sql(
            layout.auth_owner,
            "SELECT count(*) AS n FROM authsvc.sessions WHERE user_id = %s AND revoked_at IS NULL",
            (user["id"],),
        )[0]["n"]
        == 0
    )
    api.login("fay@example.com", expect=401)
    assert api.login("fay@example.com", NEW_PASSWORD)["data"]["user"]["id"] == user["id"]
    status, body = api.call("POST", "/password/reset", {"token": token, "password": PASSWORD})
    assert status == 400 and body["error"]["code"] == LinkInvalid.code


def test_only_the_newest_reset_link_works_and_none_after_30_minutes(layout, api):
    user = confirmed(layout, api, "gil@example.com")
    for _ in range(2):
        api.call("POST", "/password/forgot", {"email": "gil@example.com"}, expect=202)
    layout.drain()
    older, newer = [m for m in layout.mailbox.to("gil@example.com") if "Reset" in m["Subject"]]
    rows = [r for r in tokens_of(layout, user["id"]) if r["purpose"] == "password_reset"]
    assert len(rows) == 2
    lifetime = rows[1]["expires_at"] - rows[1]["created_at"]
    assert lifetime.total_seconds() == links.RESET_TTL == 1800
    api.call(
        "POST", "/password/reset", {"token": token_in(older), "password": NEW_PASSWORD}, expect=400
    )
    layout.sql(
        layout.auth_owner,
        "UPDATE authsvc.one_time_tokens SET expires_at = now() "
        "- interval '1 second' WHERE user_id = %s",
        (user["id"],),
    )
    api.call(
        "POST", "/password/reset", {"token": token_in(newer), "password": NEW_PASSWORD}, expect=400
    )
    api.login("gil@example.com")  # the old password still works


def test_forgot_and_reset_are_rate_limited_per_address_and_per_account(database_url, tmp_path):
    app = create_app(
        app_overrides(
            database_url,
            tmp_path,
            AUTHSVC_RATE_LIMITS="on",
            AUTHSVC_RATE_LIMIT_PASSWORD_FORGOT="2 per minute",
            AUTHSVC_RATE_LIMIT_PASSWORD_RESET="2 per minute",
        )
    )
    try:
        api = Api(app.test_client())
        one = {"REMOTE_ADDR": "10.0.0.1"}
        two = {"REMOTE_ADDR": "10.0.0.2"}
        client = app.test_client()

        def forgot(email: str, environ: dict[str, str]) -> int:
            return client.post(
                "/api/v1/auth/password/forgot", json={"email": email}, environ_base=environ
            ).status_code

        assert [forgot("a@example.com", one), forgot("b@example.com", one)] == [202, 202]
        assert forgot("c@example.com", one) == 429  # this address is over its budget
        assert forgot("a@example.com", two) == 202
        assert forgot("a@example.com", {"REMOTE_ADDR": "10.0.0.3"}) == 429  # that account is
        status, body = api.call(
            "POST", "/password/reset", {"token": "y" * 43, "password": NEW_PASSWORD}
        )
        assert status == 400
        api.call("POST", "/password/reset", {"token": "y" * 43, "password": NEW_PASSWORD})
        status, body = api.call(
            "POST", "/password/reset", {"token": "y" * 43, "password": NEW_PASSWORD}
        )
        assert status == 429 and body["error"]["code"] == RateLimited.code
    finally:
        app.extensions["authsvc"].stores.close()


# -- change -----------------------------------------------------------------------------------


def test_a_change_needs_the_current_password_and_ends_every_other_session(layout, api):
    user = confirmed(layout, api, "hal@example.com")
    other = api.login("hal@example.com")["data"]["session"]
    mine = api.login("hal@example.com")["data"]["session"]

    status, body = api.call(
        "POST",
        "/password",
        {"current_password": "wrong wrong wrong", "password": NEW_PASSWORD},
        token=mine["access_token"],
    )
    assert status == 401 and body["error"]["code"] == InvalidCredentials.code
    status, body = api.call(
        "POST",
        "/password",
        {"current_password": PASSWORD, "password": "hal@example.com-1"},
        token=mine["access_token"],
    )
    assert status == 422 and body["error"]["code"] == WeakPassword.code

    _, body = api.call(
        "POST",
        "/password",
        {"current_password": PASSWORD, "password": NEW_PASSWORD},
        token=mine["access_token"],
        expect=200,
    )
    fresh = body["data"]["session"]
    for old in (other, mine):
        status, me = api.me(old["access_token"])
        assert status == 401 and me["error"]["code"] == TokenRevoked.code
    assert api.me(fresh["access_token"])[0] == 200
    api.login("hal@example.com", expect=401)
    assert api.login("hal@example.com", NEW_PASSWORD)["data"]["user"]["id"] == user["id"]


def test_an_anonymous_account_has_no_password_to_change(api):
    token = api.anonymous()["session"]["access_token"]
    status, body = api.call(
        "POST",
        "/password",
        {"current_password": "anything at all", "password": NEW_PASSWORD},
        token=token,
    )
    assert status == 401 and body["error"]["code"] == InvalidCredentials.code


def test_expired_tokens_are_purged(layout, api):
    user = api.signup("ivy@example.com")["user"]
    layout.mailbox.to("ivy@example.com")
    api.call("POST", "/verify/resend", {"email": "ivy@example.com"}, expect=202)
    layout.drain()
    first, second = layout.mailbox.to("ivy@example.com")
    api.call("POST", "/verify", {"token": token_in(first)}, expect=200)  # spent
    assert links.purge_expired_tokens(layout.stores, layout.settings) == 1
    assert len(tokens_of(layout, user["id"])) == 1
    layout.sql(
        layout.auth_owner,
        "UPDATE authsvc.one_time_tokens SET expires_at = now() - interval '1 second'",
    )
    assert links.purge_expired_tokens(layout.stores, layout.settings) == 1
    assert tokens_of(layout, user["id"]) == []
