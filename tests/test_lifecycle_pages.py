"""The account lifecycle's hosted pages through Flask's test client, with a loopback SMTP server:
guest accounts, /verify, /forgot and /reset, the password on /account, /dev/outbox."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from authsvc import create_app
from tests.conftest import PASSWORD, app_overrides, identity_row, profile_row
from tests.mailbox import link_in, token_in
from tests.test_pages import Pages, csrf_token, field_html

NEW_PASSWORD = "a brand new horse battery"


@pytest.fixture
def pages(mail_app) -> Pages:
    return Pages(mail_app.test_client())


def path_of(link: str) -> str:
    parts = urlsplit(link)
    return f"{parts.path}?{parts.query}"


def test_a_guest_saves_the_account_and_logs_in_with_it(pages, db, mailbox):
    response = pages.post("/anonymous", form="/signup")
    assert response.status_code == 303 and response.headers["Location"].endswith("/account?guest=1")
    page = pages.client.get("/account?guest=1").text
    assert "Guest account" in page and "Save your account" in page
    assert "Change password" not in page  # a guest has none

    form = pages.client.get("/account/upgrade")
    assert form.status_code == 200
    response = pages.client.post(
        "/account/upgrade",
        data={
            "csrf_token": csrf_token(form.text),
            "email": "guest@example.com",
            "password": PASSWORD,
            "username": "guesty",
        },
    )
    assert response.status_code == 303 and response.headers["Location"].endswith("upgraded=1")
    row = identity_row(db, "guest@example.com")
    assert row["is_anonymous"] is False and profile_row(db, row["id"])["username"] == "guesty"
    assert "Guest account" not in pages.client.get("/account").text
    (mail,) = mailbox.to("guest@example.com")
    assert "/verify?token=" in link_in(mail)


def test_saving_a_guest_account_with_a_taken_email_says_so_beside_the_field(pages):
    pages.signup("taken@example.com")
    pages.client.post("/logout", data={"csrf_token": csrf_token(pages.client.get("/account").text)})
    pages.post("/anonymous", form="/signup")
    form = pages.client.get("/account/upgrade")
    response = pages.client.post(
        "/account/upgrade",
        data={
            "csrf_token": csrf_token(form.text),
            "email": "taken@example.com",
            "password": PASSWORD,
        },
    )
    assert response.status_code == 409
    assert "already exists" in field_html(response.text, "email")


def test_the_link_in_the_mail_confirms_the_address_on_the_verify_page(pages, db, mailbox):
    pages.signup("ver@example.com")
    (mail,) = mailbox.to("ver@example.com")
    page = pages.client.get(path_of(link_in(mail)))
    assert page.status_code == 200 and "Email address confirmed" in page.text
    assert identity_row(db, "ver@example.com")["email_confirmed_at"] is not None
    again = pages.client.get(path_of(link_in(mail)))
    assert again.status_code == 400 and "This link does not work" in again.text
    assert pages.client.get("/verify?token=short").status_code == 400


def test_login_with_confirmation_required_offers_a_new_link(database_url, tmp_path, mailbox, db):
    app = create_app(
        app_overrides(
            database_url, tmp_path, SMTP_URL=mailbox.url, AUTHSVC_REQUIRE_EMAIL_CONFIRMATION="on"
        )
    )
    try:
        pages = Pages(app.test_client())
        created = pages.signup("strict@example.com")
        assert created.headers["Location"].endswith("/login?confirm_sent=1")  # no session yet
        assert "We sent you a link" in pages.client.get("/login?confirm_sent=1").text
        response = pages.login("strict@example.com")
        assert response.status_code == 403
        assert "Confirm your email address first" in response.text
        assert "Send a new confirmation link" in response.text
        resend = pages.client.post(
            "/verify/resend",
            data={"csrf_token": csrf_token(response.text), "email": "strict@example.com"},
        )
        assert resend.headers["Location"].endswith("verification_sent=1")
        first, second = mailbox.wait_for(2)
        pages.client.get(path_of(link_in(second)))
        assert pages.login("strict@example.com").status_code == 303
    finally:
        app.extensions["authsvc"].stores.close()


def test_forgot_and_reset_on_the_pages(pages, mail_app, mailbox, db):
    pages.signup("reset@example.com")
    pages.client.post("/logout", data={"csrf_token": csrf_token(pages.client.get("/account").text)})
    for email in ("reset@example.com", "nobody@example.com"):
        response = pages.post("/forgot", email=email)
        assert response.status_code == 303 and response.headers["Location"].endswith("sent=1")
    assert "we sent it a link" in pages.client.get("/forgot?sent=1").text
    assert mail_app.extensions["authsvc"].mail.drain(10)
    (mail,) = [m for m in mailbox.to("reset@example.com") if "Reset" in m["Subject"]]
    form = pages.client.get(path_of(link_in(mail)))
    assert form.status_code == 200 and 'name="token"' in form.text
    weak = pages.client.post(
        "/reset",
        data={"csrf_token": csrf_token(form.text), "token": token_in(mail), "password": "password"},
    )
    assert weak.status_code == 422 and "too common" in field_html(weak.text, "password")
    done = pages.client.post(
        "/reset",
        data={
            "csrf_token": csrf_token(form.text),
            "token": token_in(mail),
            "password": NEW_PASSWORD,
        },
    )
    assert done.status_code == 303 and done.headers["Location"].endswith("password_reset=1")
    assert pages.login("reset@example.com", NEW_PASSWORD).status_code == 303
    spent = pages.client.get(path_of(link_in(mail)))
    assert spent.status_code == 400 and "Ask for a new link" in spent.text


def test_the_password_changes_on_the_account_page_and_this_browser_stays_in(pages, db):
    pages.signup("chg@example.com")
    page = pages.client.get("/account").text
    wrong = pages.client.post(
        "/account/password",
        data={
            "csrf_token": csrf_token(page),
            "current_password": "not it at all",
            "new_password": NEW_PASSWORD,
        },
    )
    assert wrong.status_code == 422
    assert "not your current password" in field_html(wrong.text, "current_password")
    done = pages.client.post(
        "/account/password",
        data={
            "csrf_token": csrf_token(page),
            "current_password": PASSWORD,
            "new_password": NEW_PASSWORD,
        },
    )
    assert done.headers["Location"].endswith("password_changed=1")
    after = pages.client.get("/account?password_changed=1")
    assert after.status_code == 200 and "Your password was changed" in after.text
    revoked = db.execute(
        "SELECT count(*) AS n FROM authsvc.sessions WHERE revoked_at IS NOT NULL"
    ).fetchone()["n"]
    assert revoked == 1  # the signup's session; the browser holds the fresh one


def test_the_outbox_page_shows_mail_in_development_only(database_url, tmp_path):
    app = create_app(app_overrides(database_url, tmp_path))
    try:
        Pages(app.test_client()).signup("dev@example.com")
        assert app.extensions["authsvc"].mail.drain(10)
        page = app.test_client().get("/dev/outbox")
        assert page.status_code == 200 and "dev@example.com" in page.text
        assert '<a href="http://127.0.0.1:8000/verify?token=' in page.text
        assert "<script" not in page.text
    finally:
        app.extensions["authsvc"].stores.close()


def test_the_outbox_page_is_404_in_production(database_url, tmp_path):
    strong = "k" + "".join(chr(97 + (i * 7) % 26) for i in range(47)) + "Z9"
    app = create_app(
        app_overrides(
            database_url,
            tmp_path,
            AUTHSVC_ENV="production",
            JWT_SECRET_KEY=strong,
            AUTHSVC_ARGON2_TIME_COST="2",
            AUTHSVC_ARGON2_MEMORY_KIB="19456",
        )
    )
    try:
        assert app.test_client().get("/dev/outbox").status_code == 404
    finally:
        app.extensions["authsvc"].stores.close()
