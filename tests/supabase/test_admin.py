"""The admin API and closing an account when identities live in Supabase Auth: the admin API's
pages, `ban_duration`, app_metadata roles, deleting the Auth user first; sessions and the audit
log stay in authsvc's Postgres."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from authsvc import create_app
from authsvc.errors import DeletionFailed, Forbidden, InvalidCredentials, TokenRevoked
from authsvc.services import admin, audit
from tests.admin_support import ADMIN_HEADERS, ADMIN_KEY, bearer
from tests.conftest import PASSWORD, AuthActions
from tests.supabase.conftest import supabase_env
from tests.supabase.fake import FakeSupabase, auth_error

USERS = "/api/v1/admin/users"


@pytest.fixture
def app(sessions_url: str, tmp_path: Any, fake: FakeSupabase):
    app = create_app(supabase_env(sessions_url, tmp_path, AUTHSVC_ADMIN_KEY=ADMIN_KEY))
    yield app
    app.extensions["authsvc"].stores.close()


def events(sessions_owner_url: str, event_type: str | None = None) -> list[dict[str, Any]]:
    with psycopg.connect(sessions_owner_url, row_factory=dict_row) as conn:
        rows = conn.execute("SELECT * FROM authsvc.audit_events ORDER BY id").fetchall()
    return [r for r in rows if event_type is None or r["type"] == event_type]


def signup(auth: AuthActions, email: str, **fields: Any) -> tuple[str, str]:
    body = auth.signup(email, PASSWORD, **fields)["data"]
    return body["user"]["id"], body["session"]["access_token"]


def test_users_are_listed_from_the_admin_apis_pages_with_their_profiles(auth, fake):
    for name in ("ann", "bob", "anna"):
        signup(auth, f"{name}@example.com", username=name)
    page = auth.client.get(USERS, query_string={"limit": 2}, headers=ADMIN_HEADERS)
    data = page.get_json()["data"]
    assert [u["username"] for u in data["users"]] == ["anna", "bob"]
    rest = auth.client.get(
        USERS, query_string={"cursor": data["next_cursor"]}, headers=ADMIN_HEADERS
    ).get_json()["data"]
    assert [u["username"] for u in rest["users"]] == ["ann"] and rest["next_cursor"] is None
    found = auth.client.get(USERS, query_string={"q": "AnN"}, headers=ADMIN_HEADERS)
    assert [u["email"] for u in found.get_json()["data"]["users"]] == [
        "anna@example.com",
        "ann@example.com",
    ]
    listed = fake.requests("list_users")[0]
    assert listed.url.params["per_page"] == "200" and listed.url.params["page"] == "1"
    batched = [
        r.url.params["id"]
        for r in fake.requests("select_profiles")
        if r.url.params.get("id", "").startswith("in.(")
    ]
    assert len(batched) == 3  # one request for each page's profiles, not one per user


def test_one_user_shows_the_auth_user_and_the_profile(auth, fake):
    user_id, _ = signup(auth, "shown@example.com", username="shown")
    data = auth.client.get(f"{USERS}/{user_id}", headers=ADMIN_HEADERS).get_json()["data"]
    assert data["consistent"] is True and data["profile"]["username"] == "shown"
    assert data["identity"]["email_confirmed_at"] is None  # Supabase users start unconfirmed
    del fake.profiles[user_id]
    drifted = auth.client.get(f"{USERS}/{user_id}", headers=ADMIN_HEADERS).get_json()["data"]
    assert drifted["consistent"] is False and drifted["profile"] is None


def test_a_ban_goes_to_supabase_auth_and_ends_our_sessions(auth, fake, sessions_owner_url):
    user_id, token = signup(auth, "troll@example.com")
    answer = auth.client.post(
        f"{USERS}/{user_id}/ban", json={"duration_seconds": 7200}, headers=ADMIN_HEADERS
    )
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["data"]["user"]["banned"] is True
    assert fake.bodies("update_user")[-1] == {"ban_duration": "7200s"}
    assert fake.users[user_id]["banned_until"] is not None
    assert auth.me(token).get_json()["error"]["code"] == TokenRevoked.code
    # Supabase Auth refuses a banned user before it looks at the password.
    assert auth.login("troll@example.com", expect=401)["error"]["code"] == (InvalidCredentials.code)
    lifted = auth.client.post(f"{USERS}/{user_id}/unban", headers=ADMIN_HEADERS)
    assert lifted.get_json()["data"]["user"]["banned"] is False
    assert fake.bodies("update_user")[-1] == {"ban_duration": "none"}
    auth.login("troll@example.com")
    assert [e["type"] for e in events(sessions_owner_url) if e["type"].startswith("user_")] == [
        "user_banned",
        "user_unbanned",
    ]


def test_the_admin_role_lives_in_app_metadata(app, auth, fake):
    user_id, _ = signup(auth, "boss@example.com")
    stores = app.extensions["authsvc"].stores
    admin.set_role(stores, audit.CLI, UUID(user_id), "admin", True)
    assert fake.users[user_id]["app_metadata"]["authsvc_roles"] == ["admin"]
    assert fake.users[user_id]["user_metadata"] == {}  # never where the user can edit it
    token = auth.login("boss@example.com")["data"]["session"]["access_token"]
    assert auth.client.get(USERS, headers=bearer(token)).status_code == 200
    admin.set_role(stores, audit.CLI, UUID(user_id), "admin", False)
    refused = auth.client.get(USERS, headers=bearer(token))
    assert refused.status_code == 403 and refused.get_json()["error"]["code"] == Forbidden.code


def test_an_admin_delete_removes_the_auth_user_then_the_profile(auth, fake, sessions_owner_url):
    user_id, token = signup(auth, "leaving@example.com", username="leaving")
    answer = auth.client.delete(f"{USERS}/{user_id}", headers=ADMIN_HEADERS)
    assert answer.status_code == 200
    assert user_id not in fake.users and user_id not in fake.profiles
    order = [name for name in fake.sequence if name in ("delete_user", "delete_profile")]
    assert order == ["delete_user", "delete_profile"]
    assert auth.me(token).get_json()["error"]["code"] == TokenRevoked.code
    (event,) = events(sessions_owner_url, "user_deleted")
    assert event["actor"] == "admin_key" and str(event["user_id"]) == user_id


def test_a_user_closes_their_account_with_the_password_checked_by_supabase(auth, fake):
    user_id, token = signup(auth, "me@example.com")
    wrong = auth.client.delete(
        "/api/v1/auth/me", json={"password": "not it, not at all"}, headers=bearer(token)
    )
    assert wrong.status_code == 401 and user_id in fake.users
    answer = auth.client.delete(
        "/api/v1/auth/me", json={"password": PASSWORD}, headers=bearer(token)
    )
    assert answer.status_code == 200
    assert user_id not in fake.users and user_id not in fake.profiles
    passwords = [json.loads(r.content)["password"] for r in fake.requests("token")]
    assert passwords[-1] == PASSWORD


def test_when_supabase_auth_refuses_the_delete_nothing_is_removed(auth, fake):
    user_id, token = signup(auth, "stuck@example.com")
    fake.fail("delete_user", auth_error(500, "unexpected_failure", "Database error deleting user"))
    answer = auth.client.delete(
        "/api/v1/auth/me", json={"password": PASSWORD}, headers=bearer(token)
    )
    assert answer.status_code == 500
    error = answer.get_json()["error"]
    assert error["code"] == DeletionFailed.code
    assert error["details"]["step"] == "identity_delete" and error["details"]["removed"] is False
    assert user_id in fake.users and user_id in fake.profiles


def test_a_lost_reply_of_the_auth_delete_is_read_back(auth, fake):
    user_id, token = signup(auth, "lost@example.com")

    def deleted_but_lost(request: httpx.Request) -> httpx.Response:
        del fake.users[user_id]
        del fake.profiles[user_id]
        raise httpx.ReadTimeout("the answer never came", request=request)

    fake.fail("delete_user", deleted_but_lost)
    answer = auth.client.delete(
        "/api/v1/auth/me", json={"password": PASSWORD}, headers=bearer(token)
    )
    assert answer.status_code == 200, answer.get_json()
    assert user_id not in fake.users
