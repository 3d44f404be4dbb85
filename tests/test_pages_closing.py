"""Deleting the account from the account page (/account/delete), through Flask's test client, in
one database and split."""

from __future__ import annotations

import html
from typing import Any

import pytest

from tests import faults
from tests.admin_support import Deployment
from tests.conftest import PASSWORD
from tests.test_pages import Pages, csrf_token, field_html


@pytest.fixture
def pages(deployment: Deployment) -> Pages:
    return Pages(deployment.app.test_client())


def signed_up(deployment: Deployment, pages: Pages, email: str = "ada@example.com") -> str:
    """A signed-in browser's account; its id."""
    assert pages.signup(email=email, username="ada").status_code == 303
    return deployment.auth.login(email)["data"]["user"]["id"]


def test_the_account_page_leads_to_the_delete_page(deployment, pages):
    signed_up(deployment, pages)
    account = pages.client.get("/account").text
    assert 'href="/account/delete"' in account and "Delete account" in account
    page = pages.client.get("/account/delete")
    assert page.status_code == 200
    assert "ada@example.com" in page.text and 'autocomplete="current-password"' in page.text
    assert page.headers["Cache-Control"] == "no-store"


def test_signed_out_the_delete_page_sends_to_login(pages):
    answer = pages.client.get("/account/delete")
    assert answer.status_code == 302 and answer.headers["Location"].endswith("/login")


def test_the_right_password_deletes_both_rows_and_signs_the_browser_out(deployment, pages):
    user_id = signed_up(deployment, pages)
    answer = pages.post("/account/delete", password=PASSWORD)
    assert answer.status_code == 303 and answer.headers["Location"].endswith("/account/deleted")
    assert deployment.identity(user_id) is None and deployment.profile(user_id) is None
    goodbye = pages.client.get("/account/deleted")
    assert goodbye.status_code == 200 and "Your account is deleted" in goodbye.text
    assert pages.client.get("/account").headers["Location"].endswith("/login")
    (event,) = deployment.events("user_deleted")
    assert str(event["user_id"]) == user_id and event["actor"] == "user"


@pytest.mark.parametrize(
    ("password", "status", "said"),
    [
        ("", 422, "Enter your current password."),
        ("not the password at all", 401, "That is not your current password."),
    ],
)
def test_a_missing_or_wrong_password_is_said_beside_the_field(
    deployment, pages, password, status, said
):
    user_id = signed_up(deployment, pages)
    answer = pages.post("/account/delete", password=password)
    assert answer.status_code == status
    html = field_html(answer.text, "password")
    assert said in html and 'aria-invalid="true"' in html
    assert 'value="' not in html.split("<input", 1)[1]  # never sent back
    assert deployment.identity(user_id) and deployment.profile(user_id)
    assert pages.client.get("/account").status_code == 200  # still signed in


def test_a_post_without_the_forms_token_deletes_nothing(deployment, pages):
    user_id = signed_up(deployment, pages)
    answer = pages.client.post("/account/delete", data={"password": PASSWORD})
    assert answer.status_code == 400 and "This form has expired" in answer.text
    forged = pages.client.post(
        "/account/delete", data={"password": PASSWORD, "csrf_token": "forged"}
    )
    assert forged.status_code == 400
    assert deployment.identity(user_id) is not None


def test_a_head_request_deletes_nothing_even_for_a_guest_who_needs_no_password(deployment, pages):
    """HEAD is GET without the body: it shows the page's headers and changes nothing."""
    assert pages.post("/anonymous", form="/signup").status_code == 303
    guests = "SELECT id FROM auth.users WHERE is_anonymous"
    (guest,) = deployment.sql(deployment.identity_owner_url, guests)
    answer = pages.client.head("/account/delete")
    assert answer.status_code == pages.client.get("/account/delete").status_code == 200
    assert deployment.identity(guest["id"]) and deployment.profile(guest["id"])
    assert pages.client.get("/account").status_code == 200  # still signed in


def test_a_deletion_that_fails_says_nothing_was_removed_and_signs_out(deployment, pages):
    user_id = signed_up(deployment, pages)
    token = csrf_token(pages.client.get("/account/delete").text)
    with faults.trigger(
        deployment.identity_owner_url, "auth.users", "RAISE EXCEPTION 'no';", when="BEFORE DELETE"
    ):
        answer = pages.client.post(
            "/account/delete", data={"csrf_token": token, "password": PASSWORD}
        )
    assert answer.status_code == 500
    text = html.unescape(answer.text)
    assert "We couldn't delete your account" in text
    assert "Something went wrong while removing your sign-in details. Nothing was removed." in text
    assert "DELETION_FAILED" in text
    assert deployment.identity(user_id) and deployment.profile(user_id)
    assert pages.client.get("/account").headers["Location"].endswith("/login")


def test_wrong_passwords_on_the_delete_page_count_against_the_login_limit(
    deployment: Deployment, tmp_path: Any
):
    app = deployment.build(AUTHSVC_RATE_LIMITS="on", AUTHSVC_RATE_LIMIT_LOGIN="2 per minute")
    pages = Pages(app.test_client())
    assert pages.signup(email="ada@example.com").status_code == 303
    statuses = [
        pages.post("/account/delete", password=f"wrong guess {n}").status_code for n in range(3)
    ]
    assert statuses == [401, 401, 429]
