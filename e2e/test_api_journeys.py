"""The same journeys through the JSON API, with Playwright's request context against gunicorn."""

from __future__ import annotations

import psycopg
from playwright.sync_api import APIRequestContext

from authsvc.errors import (
    EmailTaken,
    RefreshTokenReused,
    SignupFailed,
    TokenRevoked,
    ValidationFailed,
)
from e2e.conftest import Service
from e2e.helpers import assert_user_absent, assert_user_complete, find_user
from tests import faults

PASSWORD = "correct horse battery staple"


def bearer(session: dict) -> dict[str, str]:
    return {"Authorization": f"Bearer {session['access_token']}"}


def test_sign_up_edit_log_out_and_log_back_in_through_the_api(
    api: APIRequestContext, service: Service
):
    response = api.post(
        "/api/v1/auth/signup",
        data={
            "email": "ada@example.com",
            "password": PASSWORD,
            "username": "ada",
            "display_name": "Ada Lovelace",
        },
    )
    assert response.status == 201, response.text()
    assert response.headers["x-request-id"]
    body = response.json()
    assert body["success"] is True
    user, session = body["data"]["user"], body["data"]["session"]
    rows = assert_user_complete("ada@example.com", service.rows)
    assert rows.id == user["id"]

    me = api.get("/api/v1/auth/me", headers=bearer(session))
    assert me.status == 200 and me.json()["data"]["user"]["display_name"] == "Ada Lovelace"

    patched = api.patch(
        "/api/v1/auth/me",
        headers=bearer(session),
        data={"display_name": "Ada King", "username": "ada_king"},
    )
    assert patched.status == 200, patched.text()
    assert assert_user_complete("ada@example.com", service.rows).profile["username"] == ("ada_king")

    rotated = api.post("/api/v1/auth/refresh", data={"refresh_token": session["refresh_token"]})
    assert rotated.status == 200
    session = rotated.json()["data"]["session"]

    assert api.post("/api/v1/auth/logout", headers=bearer(session), data={}).status == 200
    after = api.get("/api/v1/auth/me", headers=bearer(session))
    assert after.status == 401 and after.json()["error"]["code"] == TokenRevoked.code

    login = api.post("/api/v1/auth/login", data={"email": "ADA@example.com", "password": PASSWORD})
    assert login.status == 200
    session = login.json()["data"]["session"]
    me = api.get("/api/v1/auth/me", headers=bearer(session))
    assert me.json()["data"]["user"]["display_name"] == "Ada King"

    # A refresh token presented twice at once (a retry, a second tab) keeps the session...
    first = api.post("/api/v1/auth/refresh", data={"refresh_token": session["refresh_token"]})
    assert first.status == 200
    again = api.post("/api/v1/auth/refresh", data={"refresh_token": session["refresh_token"]})
    assert again.status == 200, again.json()
    newer = first.json()["data"]["session"]
    assert api.get("/api/v1/auth/me", headers=bearer(newer)).status == 200
    # ... but presented after the reuse interval it is theft: the whole session ends.
    with psycopg.connect(service.owner_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE authsvc.refresh_tokens SET used_at = used_at - interval '1 minute' "
            "WHERE used_at IS NOT NULL"
        )
    stolen = api.post("/api/v1/auth/refresh", data={"refresh_token": session["refresh_token"]})
    assert stolen.status == 401 and stolen.json()["error"]["code"] == RefreshTokenReused.code
    assert api.get("/api/v1/auth/me", headers=bearer(newer)).status == 401


def test_a_taken_email_is_409_through_the_api_and_the_first_account_stays(
    api: APIRequestContext, service: Service
):
    assert (
        api.post(
            "/api/v1/auth/signup", data={"email": "grace@example.com", "password": PASSWORD}
        ).status
        == 201
    )
    again = api.post(
        "/api/v1/auth/signup",
        data={"email": " GRACE@example.com ", "password": PASSWORD, "username": "grace"},
    )
    assert again.status == 409
    assert again.json()["error"]["code"] == EmailTaken.code
    rows = assert_user_complete("grace@example.com", service.rows)
    assert rows.profile["username"] is None


def test_a_signup_that_fails_in_the_database_names_the_step_and_leaves_neither_row(
    api: APIRequestContext, service: Service
):
    with faults.profile_insert_raises(service.owner_url):
        response = api.post(
            "/api/v1/auth/signup", data={"email": "carol@example.com", "password": PASSWORD}
        )
    assert response.status == 500
    error = response.json()["error"]
    assert error["code"] == SignupFailed.code
    assert error["details"]["step"] == "profile_insert"
    assert error["details"]["reason"] == "trigger_raised"
    assert error["details"]["compensated"] is True
    assert error["request_id"] == response.headers["x-request-id"]
    assert "profile insert refused" not in response.text()  # the database's words stay inside
    assert find_user("carol@example.com", service.rows) is None
    assert_user_absent("carol@example.com", service.rows)


def test_an_invalid_body_is_422_naming_the_field(api: APIRequestContext, service: Service):
    response = api.post("/api/v1/auth/signup", data={"email": "nope", "password": PASSWORD})
    assert response.status == 422
    error = response.json()["error"]
    assert error["code"] == ValidationFailed.code and "email" in error["details"]
    assert find_user("nope", service.rows) is None
