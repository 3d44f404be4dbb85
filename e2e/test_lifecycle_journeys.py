"""The account lifecycle in Chromium: a guest saves the account and logs in; a confirmation mail
is followed before the first login; a forgotten password is reset by mail and old sessions end;
the password is changed on the account page.

Journeys that need mail run against a second gunicorn whose SMTP_URL is a real SMTP server on
loopback in this process (aiosmtpd) and that requires a confirmed email to log in; its links
point at AUTHSVC_PUBLIC_URL, and the test follows them to the service. The others run on the
session's development service, whose mail lands in the outbox at /dev/outbox.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, expect

from e2e.conftest import Service
from e2e.helpers import PostgresRows, assert_user_complete
from tests.conftest import migrate, truncate
from tests.mailbox import Mailbox, link_in
from tests.pgcluster import PgServer
from tests.service import Gunicorn, ServiceFailed, service_env

PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "a brand new horse battery"
PUBLIC_URL = "http://authsvc.test"


@dataclass
class MailingService:
    gunicorn: Gunicorn
    owner_url: str
    mailbox: Mailbox

    @property
    def base(self) -> str:
        return self.gunicorn.base

    @property
    def rows(self) -> PostgresRows:
        return PostgresRows(self.owner_url)

    def follow(self, mail) -> str:
        """The mail's link, as this service's URL (the link names AUTHSVC_PUBLIC_URL)."""
        link = link_in(mail)
        assert link.startswith(PUBLIC_URL + "/")
        parts = urlsplit(link)
        return f"{self.base}{parts.path}?{parts.query}"


@pytest.fixture(scope="module")
def mailing(
    e2e_postgres: PgServer, tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[MailingService]:
    owner_url = e2e_postgres.create_database("authsvc_e2e_mail")
    migrate(owner_url)
    output = Path(pytestconfig.getoption("--output", "test-results")).absolute()
    with Mailbox() as mailbox:
        env = service_env(
            tmp_path_factory.mktemp("authsvc-mail-data"),
            DATABASE_URL=e2e_postgres.service_url(owner_url),
            SMTP_URL=mailbox.url,
            AUTHSVC_PUBLIC_URL=PUBLIC_URL,
            AUTHSVC_REQUIRE_EMAIL_CONFIRMATION="on",
            AUTHSVC_MAIL_RETRY_MS="100",
        )
        try:
            gunicorn = Gunicorn.started(env, log_path=output / "gunicorn-mail.log")
        except ServiceFailed as exc:
            pytest.fail(str(exc))
        yield MailingService(gunicorn, owner_url, mailbox)
        gunicorn.stop()


@pytest.fixture
def mail_service(mailing: MailingService) -> MailingService:
    truncate(mailing.owner_url)
    mailing.mailbox.messages.clear()
    return mailing


def fill(page: Page, **fields: str) -> None:
    labels = {
        "email": "Email address",
        "password": "Password",
        "username": "Username",
        "current_password": "Current password",
        "new_password": "New password",
    }
    for name, value in fields.items():
        page.get_by_label(labels[name], exact=True).fill(value)


def log_in(page: Page, email: str, password: str = PASSWORD) -> None:
    fill(page, email=email, password=password)
    page.get_by_role("button", name="Log in").click()


def test_a_guest_saves_the_account_and_logs_in_with_it(page: Page, service: Service, shoot):
    page.goto("/signup")
    page.get_by_role("button", name="Try it first: continue as a guest").click()
    expect(page).to_have_url(re.compile(r"/account\?guest=1$"))
    expect(page.get_by_role("status")).to_contain_text("You are using a guest account")
    shoot(page, "guest-account", page.get_by_role("heading", name="Guest account"))
    guest_id = page.locator("code.mono").inner_text()

    page.get_by_role("link", name="Save your account").click()
    fill(page, email="gwen@example.com", password=PASSWORD, username="gwen")
    shoot(page, "guest-upgrade", page.get_by_role("button", name="Save account"))
    page.get_by_role("button", name="Save account").click()
    expect(page).to_have_url(re.compile(r"/account\?upgraded=1$"))
    expect(page.get_by_role("status")).to_contain_text("Your account is saved")
    expect(page.locator("code.mono")).to_have_text(guest_id)  # the same account
    rows = assert_user_complete("gwen@example.com", service.rows)
    assert rows.id == guest_id and rows.identity["is_anonymous"] is False

    page.get_by_role("button", name="Sign out", exact=True).click()
    log_in(page, "gwen@example.com")
    expect(page).to_have_url(re.compile(r"/account$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("gwen")
    # Development: the confirmation mail is in the outbox.
    page.goto("/dev/outbox")
    mail = page.locator("article").filter(has_text="gwen@example.com")
    expect(mail.get_by_role("heading")).to_have_text("Confirm your email address")
    expect(mail.get_by_role("link")).to_have_attribute("href", re.compile(r"/verify\?token="))
    shoot(page, "outbox", mail)


def test_the_confirmation_link_in_the_mail_opens_the_first_login(
    page: Page, mail_service: MailingService, shoot
):
    base = mail_service.base
    page.goto(f"{base}/signup")
    fill(page, email="ada@example.com", password=PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page).to_have_url(re.compile(r"/login\?confirm_sent=1$"))
    expect(page.get_by_role("status")).to_contain_text("We sent you a link")

    log_in(page, "ada@example.com")
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Confirm your email address first")
    shoot(
        page, "login-not-confirmed", page.get_by_role("button", name="Send a new confirmation link")
    )

    (mail,) = mail_service.mailbox.to("ada@example.com")
    assert mail["Subject"] == "Confirm your email address"
    page.goto(mail_service.follow(mail))
    expect(page.get_by_role("heading", level=1)).to_have_text("Email address confirmed")
    shoot(page, "verify-confirmed", "your email address is confirmed")
    page.get_by_role("link", name="Log in").click()
    log_in(page, "ada@example.com")
    expect(page).to_have_url(re.compile(r"/account$"))
    expect(page.get_by_text("Confirmed", exact=True)).to_be_visible()
    rows = assert_user_complete("ada@example.com", mail_service.rows)
    assert rows.identity["email_confirmed_at"] is not None


def test_a_forgotten_password_is_reset_by_mail_and_old_sessions_end(
    browser: Browser, page: Page, mail_service: MailingService, shoot
):
    base = mail_service.base
    # A confirmed account, signed in on another device.
    other = browser.new_context(base_url=base)
    try:
        device = other.new_page()
        device.goto("/signup")
        fill(device, email="fay@example.com", password=PASSWORD)
        device.get_by_role("button", name="Create account").click()
        device.goto(mail_service.follow(mail_service.mailbox.to("fay@example.com")[0]))
        device.goto("/login")
        log_in(device, "fay@example.com")
        expect(device).to_have_url(re.compile(r"/account$"))

        page.goto(f"{base}/login")
        page.get_by_role("link", name="Forgot your password?").click()
        fill(page, email="fay@example.com")
        page.get_by_role("button", name="Send me a link").click()
        expect(page.get_by_role("status")).to_contain_text("we sent it a link")
        shoot(page, "forgot-sent", "The link works once, for 30 minutes")

        resets = mail_service.mailbox
        (mail,) = [m for m in resets.to("fay@example.com") if m["Subject"] == "Reset your password"]
        page.goto(mail_service.follow(mail))
        fill(page, password=NEW_PASSWORD)
        shoot(page, "reset", page.get_by_role("button", name="Save the new password"))
        page.get_by_role("button", name="Save the new password").click()
        expect(page).to_have_url(re.compile(r"/login\?password_reset=1$"))
        expect(page.get_by_role("status")).to_contain_text("every session ended")

        # The other device's session is gone.
        device.goto("/account")
        expect(device).to_have_url(re.compile(r"/login$"))
        log_in(page, "fay@example.com", PASSWORD)
        expect(page.get_by_role("alert")).to_contain_text("don't match an account")
        log_in(page, "fay@example.com", NEW_PASSWORD)
        expect(page).to_have_url(re.compile(r"/account$"))
    finally:
        other.close()


def test_the_password_is_changed_on_the_account_page(
    browser: Browser, page: Page, service: Service, shoot
):
    page.goto("/signup")
    fill(page, email="hal@example.com", password=PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page).to_have_url(re.compile(r"/account\?welcome=1$"))
    other = browser.new_context(base_url=service.base_url)
    try:
        device = other.new_page()
        device.goto("/login")
        log_in(device, "hal@example.com")
        expect(device).to_have_url(re.compile(r"/account$"))

        fill(page, current_password="not my password", new_password=NEW_PASSWORD)
        page.get_by_role("button", name="Change password").click()
        current = page.get_by_label("Current password", exact=True)
        expect(current).to_have_attribute("aria-invalid", "true")
        expect(current).to_have_accessible_description(re.compile("not your current password"))
        shoot(page, "password-change-error", current)

        fill(page, current_password=PASSWORD, new_password=NEW_PASSWORD)
        page.get_by_role("button", name="Change password").click()
        expect(page).to_have_url(re.compile(r"/account\?password_changed=1$"))
        expect(page.get_by_role("status")).to_contain_text("Your password was changed")
        shoot(page, "password-changed", "Every other session was signed out")

        device.goto("/account")
        expect(device).to_have_url(re.compile(r"/login$"))
        page.get_by_role("button", name="Sign out", exact=True).click()
        log_in(page, "hal@example.com", NEW_PASSWORD)
        expect(page).to_have_url(re.compile(r"/account$"))
    finally:
        other.close()
