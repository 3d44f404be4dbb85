"""A person in Chromium: sign up, the account page, edit, log out, log in; and what goes wrong."""

from __future__ import annotations

import re

from playwright.sync_api import Browser, Page, expect

from e2e.conftest import Service
from e2e.helpers import assert_user_absent, assert_user_complete, find_user
from tests import faults

PASSWORD = "correct horse battery staple"


def fill_signup(
    page: Page, email: str, password: str = PASSWORD, username: str = "", display_name: str = ""
) -> None:
    page.get_by_label("Email address", exact=True).fill(email)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_label("Username", exact=True).fill(username)
    page.get_by_label("Display name", exact=True).fill(display_name)


def log_in(page: Page, email: str, password: str = PASSWORD) -> None:
    page.get_by_label("Email address", exact=True).fill(email)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Log in").click()


def test_a_person_signs_up_edits_the_profile_logs_out_and_logs_back_in(
    page: Page, service: Service, shoot
):
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login$"))
    page.get_by_role("link", name="Create an account").click()
    expect(page).to_have_title("Create your account · authsvc")
    shoot(
        page,
        "signup",
        page.get_by_role("heading", level=1, name="Create your account"),
        page.get_by_role("button", name="Create account"),
    )

    fill_signup(page, "ada@example.com", username="ada", display_name="Ada Lovelace")
    page.get_by_role("button", name="Create account").click()
    expect(page).to_have_url(re.compile(r"/account\?welcome=1$"))
    expect(page.get_by_role("status")).to_have_text("Welcome! Your account is ready.")
    expect(page.get_by_role("heading", level=1)).to_have_text("Ada Lovelace")
    expect(page.get_by_text("ada@example.com").first).to_be_visible()
    shoot(
        page,
        "account",
        page.get_by_role("heading", level=1, name="Ada Lovelace"),
        "Welcome! Your account is ready.",
    )
    rows = assert_user_complete("ada@example.com", service.rows)
    assert rows.tables == ("public.users", "auth.users")
    expect(page.get_by_text(rows.id)).to_be_visible()

    # The session lives in a cookie no script can read.
    (cookie,) = [c for c in page.context.cookies() if c["name"] == "authsvc_session"]
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Lax"
    assert cookie["secure"] is False  # development over http; production sets Secure
    assert "authsvc_session" not in page.evaluate("document.cookie")

    page.get_by_label("Display name", exact=True).fill("Ada King")
    page.get_by_label("Username", exact=True).fill("ada_king")
    page.get_by_role("button", name="Save changes").click()
    expect(page.get_by_role("status")).to_have_text("Your profile was saved.")
    expect(page.get_by_role("heading", level=1)).to_have_text("Ada King")
    shoot(
        page,
        "account-saved",
        page.get_by_role("heading", level=1, name="Ada King"),
        "Your profile was saved.",
    )
    rows = assert_user_complete("ada@example.com", service.rows)
    assert (rows.profile["username"], rows.profile["display_name"]) == ("ada_king", "Ada King")

    page.get_by_role("button", name="Sign out", exact=True).click()
    expect(page).to_have_url(re.compile(r"/login\?signed_out=1$"))
    expect(page.get_by_role("status")).to_have_text("You have signed out.")
    shoot(
        page,
        "login-signed-out",
        page.get_by_role("heading", level=1, name="Log in"),
        "You have signed out.",
    )
    page.goto("/account")
    expect(page).to_have_url(re.compile(r"/login$"))

    log_in(page, "ada@example.com", "not my password")
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("That email and password don't match an account")
    expect(alert).to_be_focused()
    shoot(page, "login-error", alert)

    log_in(page, "ADA@example.com")
    expect(page).to_have_url(re.compile(r"/account$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Ada King")


def test_a_taken_email_is_explained_next_to_the_email_field(page: Page, service: Service, shoot):
    response = page.request.post(
        "/api/v1/auth/signup", data={"email": "grace@example.com", "password": PASSWORD}
    )
    assert response.status == 201
    page.goto("/signup")
    fill_signup(page, "Grace@Example.com", username="grace")
    page.get_by_role("button", name="Create account").click()

    email = page.get_by_label("Email address", exact=True)
    expect(email).to_have_attribute("aria-invalid", "true")
    expect(email).to_have_accessible_description(re.compile("already exists"))
    expect(email).to_have_value("Grace@Example.com")
    expect(page.locator("#email-error")).to_contain_text(
        "An account with this email already exists"
    )
    expect(page.get_by_role("alert")).to_be_focused()
    for other in ("Password", "Username", "Display name"):
        expect(page.get_by_label(other, exact=True)).not_to_have_attribute("aria-invalid", "true")
    shoot(page, "signup-email-taken", page.locator("#email-error"))
    # The error summary takes the keyboard straight to the field.
    page.get_by_role("alert").get_by_role("link").click()
    expect(page).to_have_url(re.compile(r"#email$"))
    rows = assert_user_complete("grace@example.com", service.rows)
    assert rows.profile["username"] is None  # the first account, untouched


def test_a_signup_that_fails_in_the_database_says_so_and_leaves_neither_row(
    page: Page, service: Service, shoot
):
    page.goto("/signup")
    fill_signup(page, "carol@example.com", username="carol", display_name="Carol")
    with faults.profile_insert_raises(service.owner_url):
        page.get_by_role("button", name="Create account").click()
        alert = page.get_by_role("alert")
        expect(alert).to_contain_text("We couldn't create your account")
    expect(alert).to_contain_text("Something went wrong while saving your profile")
    expect(alert).to_contain_text("Nothing was created: there is no account for carol@example.com")
    expect(alert).to_contain_text("SIGNUP_FAILED")
    expect(alert).to_be_focused()
    shoot(page, "signup-failed", alert)
    assert find_user("carol@example.com", service.rows) is None
    assert_user_absent("carol@example.com", service.rows)

    # What was typed is still there (but the password); with the fault gone, a retry works.
    expect(page.get_by_label("Username", exact=True)).to_have_value("carol")
    expect(page.get_by_label("Password", exact=True)).to_have_value("")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page).to_have_url(re.compile(r"/account\?welcome=1$"))
    assert_user_complete("carol@example.com", service.rows)


def test_the_signup_form_explains_every_problem_beside_its_field(
    page: Page, service: Service, shoot
):
    page.goto("/signup")
    fill_signup(page, "not-an-email", password="short", username="Bad Name")
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("alert")).to_contain_text("Check the highlighted fields")
    expected = {
        "Email address": "Not a valid email address.",
        "Password": "Use at least 8 characters.",
        "Username": "lower-case letters, digits and underscores",
    }
    for label, message in expected.items():
        field = page.get_by_label(label, exact=True)
        expect(field).to_have_attribute("aria-invalid", "true")
        expect(field).to_have_accessible_description(re.compile(re.escape(message)))
    display_name = page.get_by_label("Display name", exact=True)
    expect(display_name).not_to_have_attribute("aria-invalid", "true")
    shoot(
        page,
        "signup-errors",
        page.get_by_role("alert"),
        *(page.locator(f"#{name}-error") for name in ("email", "password", "username")),
    )
    assert find_user("not-an-email", service.rows) is None


def test_the_keyboard_reaches_the_fields_in_reading_order(page: Page):
    page.goto("/signup")
    page.get_by_label("Email address", exact=True).focus()
    order = ["email", "password", "username", "display_name"]
    for name in order[1:]:
        page.keyboard.press("Tab")
        expect(page.locator(f"#{name}")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Create account")).to_be_focused()


def test_the_pages_fit_a_phone_screen(browser: Browser, service: Service, shoot):
    context = browser.new_context(
        base_url=service.base_url,
        viewport={"width": 390, "height": 844},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    )
    try:
        phone = context.new_page()
        pages = (
            ("/signup", "signup-phone", "Create your account", "Create account"),
            ("/login", "login-phone", "Log in", "Log in"),
        )
        for path, name, title, button in pages:
            phone.goto(path)
            assert phone.evaluate("document.documentElement.scrollWidth <= innerWidth")
            shoot(
                phone,
                name,
                phone.get_by_role("heading", level=1, name=title),
                phone.get_by_role("button", name=button, exact=True),
            )
    finally:
        context.close()
