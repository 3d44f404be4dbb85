"""A person deletes their account from the account page in Chromium; an operator bans one with
the admin API, granted by `authsvc users grant-admin`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import psycopg
from playwright.sync_api import APIRequestContext, Page, expect

from e2e.conftest import Service
from e2e.helpers import assert_user_absent, assert_user_complete
from tests.conftest import TEST_SECRET

PASSWORD = "correct horse battery staple"


def sign_up(page: Page, email: str, username: str) -> None:
    page.goto("/signup")
    page.get_by_label("Email address", exact=True).fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Username", exact=True).fill(username)
    page.get_by_role("button", name="Create account").click()
    expect(page).to_have_url(re.compile(r"/account\?welcome=1$"))


def audit_types(service: Service) -> list[str]:
    with psycopg.connect(service.owner_url) as conn:
        rows = conn.execute("SELECT type FROM authsvc.audit_events ORDER BY id").fetchall()
    return [r[0] for r in rows]


def test_a_person_deletes_their_account_from_the_account_page(
    page: Page, api: APIRequestContext, service: Service, shoot
):
    sign_up(page, "grace@example.com", "grace")
    assert_user_complete("grace@example.com", service.rows)
    # Signed in on another device too: that session must end with the account.
    other = api.post(
        "/api/v1/auth/login", data={"email": "grace@example.com", "password": PASSWORD}
    ).json()
    other_token = other["data"]["session"]["access_token"]

    page.get_by_role("link", name="Delete account…").click()
    expect(page).to_have_url(re.compile(r"/account/delete$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Delete your account")
    shoot(
        page,
        "account-delete",
        page.get_by_text("grace@example.com"),
        page.get_by_role("button", name="Delete my account"),
    )

    page.get_by_label("Password", exact=True).fill("not my password at all")
    page.get_by_role("button", name="Delete my account").click()
    password = page.get_by_label("Password", exact=True)
    expect(password).to_have_attribute("aria-invalid", "true")
    expect(password).to_have_accessible_description(re.compile("not your current password"))
    expect(page.get_by_role("alert")).to_contain_text("Your account was not deleted")
    expect(page.get_by_role("alert")).to_be_focused()
    shoot(page, "account-delete-wrong-password", page.get_by_role("alert"))
    assert_user_complete("grace@example.com", service.rows)

    # Changing one's mind goes back to the account, untouched.
    page.get_by_role("link", name="Keep my account").click()
    expect(page).to_have_url(re.compile(r"/account$"))
    page.get_by_role("link", name="Delete account…").click()

    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Delete my account").click()
    expect(page).to_have_url(re.compile(r"/account/deleted$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Your account is deleted")
    shoot(page, "account-deleted", page.get_by_role("status"))

    assert_user_absent("grace@example.com", service.rows)
    me = api.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {other_token}"})
    assert me.status == 401 and me.json()["error"]["code"] == "TOKEN_REVOKED"
    page.goto("/account")
    expect(page).to_have_url(re.compile(r"/login$"))
    page.get_by_label("Email address", exact=True).fill("grace@example.com")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("don't match an account")
    assert "user_deleted" in audit_types(service)

    # The address is free for a new account.
    sign_up(page, "grace@example.com", "grace")
    assert_user_complete("grace@example.com", service.rows)


def test_an_operator_bans_a_person_and_their_browser_is_signed_out(
    page: Page, api: APIRequestContext, service: Service
):
    sign_up(page, "mallory@example.com", "mallory")
    api.post("/api/v1/auth/signup", data={"email": "op@example.com", "password": PASSWORD})
    command = (
        [shutil.which("authsvc")]
        if shutil.which("authsvc")
        else [sys.executable, "-m", "authsvc.cli"]
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTHSVC_", "DATABASE_"))}
    # The operator's database settings are the service's: its URL, and behind a pooler
    # (AUTHSVC_TEST_POOLER=pgbouncer) the pooler setting and the direct URL too.
    database = {
        k: v for k, v in service.gunicorn.env.items() if k.startswith(("DATABASE_", "AUTHSVC_DB_"))
    }
    granted = subprocess.run(
        [*command, "users", "grant-admin", "op@example.com"],
        env={**env, **database, "JWT_SECRET_KEY": TEST_SECRET},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert granted.returncode == 0, granted.stderr
    login = api.post("/api/v1/auth/login", data={"email": "op@example.com", "password": PASSWORD})
    admin = {"Authorization": f"Bearer {login.json()['data']['session']['access_token']}"}

    found = api.get("/api/v1/admin/users", params={"q": "mallory"}, headers=admin).json()
    (mallory,) = found["data"]["users"]
    banned = api.post(
        f"/api/v1/admin/users/{mallory['id']}/ban", data={"duration_seconds": 3600}, headers=admin
    )
    assert banned.status == 200 and banned.json()["data"]["user"]["banned"] is True

    page.reload()  # the next page the person loads: signed out
    expect(page).to_have_url(re.compile(r"/login$"))
    page.get_by_label("Email address", exact=True).fill("mallory@example.com")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("This account is suspended")

    events = api.get(
        "/api/v1/admin/audit", params={"user_id": mallory["id"]}, headers=admin
    ).json()["data"]["events"]
    assert [e["type"] for e in events] == ["user_banned", "signup"]
    assert events[0]["actor"] == "admin" and events[0]["details"]["sessions_revoked"] == 1
