"""The hosted pages through Flask's test client: forms, CSRF, the cookie, errors beside fields."""

from __future__ import annotations

import re
import socket
from datetime import timedelta
from http.cookies import SimpleCookie
from typing import Any

import pytest
from flask_jwt_extended import create_access_token, decode_token

from authsvc import create_app
from authsvc.errors import (
    BadRequest,
    DatabaseUnavailable,
    InvalidCredentials,
    RateLimited,
    SignupFailed,
)
from authsvc.pages.browser import COOKIE_NAME, SECURE_COOKIE_NAME
from tests import faults
from tests.conftest import PASSWORD, app_overrides, assert_no_trace, count, identity_row

SERVICE_KEY = "service-role-key-that-must-never-reach-a-browser"


class Pages:
    """A browser on the test client: reads each form's CSRF token and posts it back."""

    def __init__(self, client: Any, cookie_name: str = COOKIE_NAME) -> None:
        self.client = client
        self.cookie_name = cookie_name

    def csrf(self, path: str) -> str:
        response = self.client.get(path)
        assert response.status_code == 200, response.text
        return csrf_token(response.text)

    def post(self, path: str, form: str | None = None, **fields: str):
        """Fetch `form` (default: `path`) for its token, then post `fields` to `path`."""
        token = self.csrf(form or path)
        return self.client.post(path, data={"csrf_token": token, **fields})

    def signup(self, email: str = "alice@example.com", password: str = PASSWORD, **fields: str):
        return self.post("/signup", email=email, password=password, **fields)

    def login(self, email: str = "alice@example.com", password: str = PASSWORD):
        return self.post("/login", email=email, password=password)

    def cookie(self) -> str | None:
        cookie = self.client.get_cookie(self.cookie_name)
        return cookie.value if cookie else None


def csrf_token(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the form has no CSRF token"
    return match.group(1)


def field_html(html: str, name: str) -> str:
    """The markup of the form field holding input `name` (label, hint, errors, input)."""
    for chunk in re.split(r'(?=<div class="field(?: field--error)?">)', html)[1:]:
        if f'id="{name}" name="{name}"' in chunk:
            return chunk
    raise AssertionError(f"no field {name!r} on the page")


def input_tag(html: str, name: str) -> str:
    match = re.search(rf'<input class="field__input" id="{name}"[^>]*>', html)
    assert match, f"no input {name!r}"
    return match.group(0)


def set_cookie_header(response: Any, name: str) -> str:
    headers = [h for h in response.headers.getlist("Set-Cookie") if h.startswith(name + "=")]
    assert headers, f"no Set-Cookie for {name}"
    return headers[-1]


def tokens_in(app: Any, cookie_value: str) -> dict[str, str]:
    """The tokens the browser holds, read from the cookie with the service's own key."""
    jar = app.extensions["authsvc.pages"]
    return jar._serializer.loads(cookie_value)


@pytest.fixture
def pages(client) -> Pages:
    return Pages(client)


@pytest.fixture
def make_app(database_url, tmp_path):
    """Apps with extra settings, closed at the end."""
    made = []

    def make(**extra: Any):
        app = create_app(app_overrides(database_url, tmp_path, **extra))
        made.append(app)
        return app

    yield make
    for app in made:
        app.extensions["authsvc"].stores.close()


# -- rendering ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "fields"),
    [
        ("/signup", ["email", "password", "username", "display_name"]),
        ("/login", ["email", "password"]),
    ],
)
def test_every_input_has_a_label_and_the_fields_come_in_reading_order(client, path, fields):
    html = client.get(path).text
    assert '<html lang="en">' in html
    for name in fields:
        assert f'<label class="field__label" for="{name}">' in html
    positions = [html.index(f'id="{name}" name="{name}"') for name in fields]
    assert positions == sorted(positions)
    assert html.index(fields[-1]) < html.index('type="submit"')


def test_the_root_sends_a_stranger_to_the_login_page_and_a_member_to_the_account(pages):
    assert pages.client.get("/").headers["Location"].endswith("/login")
    pages.signup()
    assert pages.client.get("/").headers["Location"].endswith("/account")


def test_pages_send_security_headers_and_are_never_cached(client):
    response = client.get("/login")
    assert response.headers["Cache-Control"] == "no-store"
    assert "script-src" not in response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Request-ID"]


def test_the_stylesheet_is_served_from_the_service_itself(client):
    html = client.get("/login").text
    hrefs = re.findall(r'(?:href|src)="([^"]+)"', html)
    assert all(h.startswith("/") or h.startswith("#") for h in hrefs), hrefs
    response = client.get("/assets/pages.css")
    assert response.status_code == 200 and "text/css" in response.content_type
    assert "Set-Cookie" not in response.headers


# -- the cookie -----------------------------------------------------------------------------


def test_the_session_cookie_is_httponly_and_samesite_and_not_secure_in_development(pages):
    header = set_cookie_header(pages.client.get("/login"), COOKIE_NAME)
    assert "HttpOnly" in header and "SameSite=Lax" in header and "Path=/" in header
    assert "Secure" not in header
    assert "Max-Age" not in header  # anonymous: gone when the browser closes
    header = set_cookie_header(pages.signup(), COOKIE_NAME)
    assert "HttpOnly" in header and "SameSite=Lax" in header
    assert "Max-Age=" in header


def test_the_session_cookie_is_secure_and_host_prefixed_in_production(make_app):
    app = make_app(
        AUTHSVC_ENV="production",
        AUTHSVC_ARGON2_TIME_COST="2",
        AUTHSVC_ARGON2_MEMORY_KIB="19456",
    )
    client = app.test_client()
    response = client.get("/signup")
    header = set_cookie_header(response, SECURE_COOKIE_NAME)
    assert "Secure" in header and "HttpOnly" in header and "SameSite=Lax" in header
    assert "Domain=" not in header and "Path=/" in header
    pages = Pages(client, SECURE_COOKIE_NAME)
    response = pages.signup(username="alice")
    assert response.status_code == 303
    assert "Secure" in set_cookie_header(response, SECURE_COOKIE_NAME)


def test_no_token_and_no_service_key_ever_reaches_the_html(make_app):
    app = make_app(SUPABASE_SERVICE_ROLE_KEY=SERVICE_KEY)
    pages = Pages(app.test_client())
    bodies = [pages.signup(username="alice").text]
    held = tokens_in(app, pages.cookie())
    assert held["at"] and held["rt"]
    for path in ("/account", "/account?welcome=1", "/login", "/signup"):
        bodies.append(pages.client.get(path).text)
    bodies.append(pages.post("/account", display_name="Alice", username="alice").text)
    for body in bodies:
        assert held["at"] not in body and held["rt"] not in body
        assert SERVICE_KEY not in body


# -- CSRF -----------------------------------------------------------------------------------


def test_a_form_posted_without_its_csrf_token_is_refused_with_a_page_and_creates_nothing(
    client, db
):
    client.get("/signup")
    response = client.post("/signup", data={"email": "a@example.com", "password": PASSWORD})
    assert response.status_code == 400
    assert response.content_type.startswith("text/html")
    assert "This form has expired" in response.text
    assert BadRequest.code in response.text
    assert count(db, "auth.users") == 0


def test_a_csrf_token_from_another_browser_is_refused(app, db):
    other = Pages(app.test_client())
    stolen = other.csrf("/signup")
    victim = app.test_client()
    victim.get("/signup")
    response = victim.post(
        "/signup", data={"csrf_token": stolen, "email": "a@example.com", "password": PASSWORD}
    )
    assert response.status_code == 400
    assert count(db, "auth.users") == 0


def test_a_post_with_no_cookie_at_all_is_refused(client, db):
    token = Pages(client).csrf("/signup")
    client.delete_cookie(COOKIE_NAME)
    response = client.post(
        "/signup", data={"csrf_token": token, "email": "a@example.com", "password": PASSWORD}
    )
    assert response.status_code == 400
    assert count(db, "auth.users") == 0


@pytest.mark.parametrize("path", ["/signup", "/login", "/forgot"])
def test_a_head_request_is_answered_as_get_and_never_runs_the_form(pages, db, path):
    """HEAD is GET without the body, and is not checked for a CSRF token: it must not post."""
    page = pages.client.get(path)
    answer = pages.client.head(path, data={"email": "head@example.com", "password": PASSWORD})
    assert answer.status_code == page.status_code == 200
    assert answer.headers["Content-Type"] == page.headers["Content-Type"]
    assert count(db, "auth.users") == 0


def test_a_tampered_cookie_is_ignored(pages):
    token = pages.csrf("/signup")
    pages.client.set_cookie(COOKIE_NAME, pages.cookie()[:-2] + "xx")
    response = pages.client.post(
        "/signup", data={"csrf_token": token, "email": "a@example.com", "password": PASSWORD}
    )
    assert response.status_code == 400


def test_logout_and_profile_changes_need_the_csrf_token_too(pages, db):
    pages.signup(display_name="Alice")
    assert pages.client.post("/account", data={"display_name": "Mallory"}).status_code == 400
    assert pages.client.post("/logout").status_code == 400
    assert pages.client.get("/account").status_code == 200  # still signed in
    assert db.execute("SELECT display_name FROM public.users").fetchone()["display_name"] == (
        "Alice"
    )


def test_signing_in_changes_the_csrf_token(pages):
    before = pages.csrf("/signup")
    pages.signup()
    assert pages.csrf("/account") != before


# -- signup ---------------------------------------------------------------------------------


def test_signup_creates_both_rows_signs_in_and_lands_on_the_account(pages, db):
    response = pages.signup("Ada@Example.COM", username="ada", display_name="Ada Lovelace")
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/account?welcome=1")
    identity = identity_row(db, "ada@example.com")
    assert identity["signup_state"] == "complete"
    profile = db.execute("SELECT * FROM public.users WHERE id = %s", (identity["id"],)).fetchone()
    assert profile["username"] == "ada" and profile["display_name"] == "Ada Lovelace"
    page = pages.client.get("/account?welcome=1")
    assert page.status_code == 200
    assert "Welcome! Your account is ready." in page.text
    assert "ada@example.com" in page.text and "Ada Lovelace" in page.text
    assert str(identity["id"]) in page.text


@pytest.mark.parametrize(
    ("fields", "name", "message"),
    [
        ({"email": ""}, "email", "Enter your email address."),
        ({"email": "not-an-email"}, "email", "Not a valid email address."),
        ({"password": ""}, "password", "Enter your password."),
        ({"password": "short"}, "password", "Use at least 8 characters."),
        ({"password": "password"}, "password", "too common"),
        ({"username": "Has Space"}, "username", "lower-case letters, digits and underscores"),
        ({"display_name": "x" * 101}, "display_name", "between 1 and 100 characters"),
    ],
)
def test_a_bad_field_is_explained_next_to_it_and_nothing_is_created(
    pages, db, fields, name, message
):
    body = {"email": "alice@example.com", "password": PASSWORD, **fields}
    response = pages.post("/signup", **body)
    assert response.status_code == 422
    block = field_html(response.text, name)
    assert block.startswith('<div class="field field--error">')
    assert message in block
    tag = input_tag(response.text, name)
    assert 'aria-invalid="true"' in tag
    assert f"{name}-error" in re.search(r'aria-describedby="([^"]+)"', tag).group(1)
    # The other fields are not marked, and the summary links to the field.
    for other in ("email", "password", "username", "display_name"):
        if other != name:
            assert "aria-invalid" not in input_tag(response.text, other)
    assert f'<a href="#{name}">' in response.text
    assert count(db, "auth.users") == 0


def test_every_problem_is_reported_at_once(pages):
    response = pages.post("/signup", email="bad", password="short", username="X")
    for name in ("email", "password", "username"):
        assert 'aria-invalid="true"' in input_tag(response.text, name)


def test_the_form_keeps_what_was_typed_but_never_the_password(pages):
    response = pages.post(
        "/signup",
        email="alice@example.com",
        password="s3cret-but-short",
        username="Bad Name",
        display_name="<b>Alice</b>",
    )
    assert 'value="alice@example.com"' in input_tag(response.text, "email")
    assert 'value="Bad Name"' in input_tag(response.text, "username")
    assert "&lt;b&gt;Alice&lt;/b&gt;" in input_tag(response.text, "display_name")
    assert "s3cret-but-short" not in response.text
    assert "value=" not in input_tag(response.text, "password")


def test_a_taken_email_is_explained_next_to_the_email_field(pages, app, db):
    pages.signup("alice@example.com")
    other = Pages(app.test_client())
    response = other.signup("ALICE@example.com")
    assert response.status_code == 409
    block = field_html(response.text, "email")
    assert "An account with this email already exists" in block
    assert 'aria-invalid="true"' in input_tag(response.text, "email")
    assert count(db, "auth.users") == 1 and count(db, "public.users") == 1


def test_a_taken_username_is_explained_next_to_the_username_field(pages, app, db):
    pages.signup("alice@example.com", username="alice")
    response = Pages(app.test_client()).signup("bob@example.com", username="alice")
    assert response.status_code == 409
    assert "This username is taken" in field_html(response.text, "username")
    assert_no_trace(db, "bob@example.com")


@pytest.mark.parametrize(
    ("fault", "step"),
    [
        (faults.profile_insert_raises, "saving your profile"),
        (faults.profile_insert_returns_null, "checking the profile we had just saved"),
    ],
)
def test_a_signup_that_fails_in_the_database_says_so_and_that_nothing_was_created(
    pages, db, owner_url, fault, step
):
    with fault(owner_url):
        response = pages.signup("carol@example.com", username="carol")
    assert response.status_code == 500
    assert response.content_type.startswith("text/html")
    assert "We couldn&#39;t create your account" in response.text
    assert f"Something went wrong while {step}" in response.text
    assert "Nothing was created: there is no account for carol@example.com" in response.text
    assert SignupFailed.code in response.text
    assert "Traceback" not in response.text and "INSERT" not in response.text
    assert_no_trace(db, "carol@example.com")
    assert pages.client.get("/account").status_code == 302  # not signed in


def test_a_signup_the_database_refuses_the_service_says_why_in_words(
    pages, db, owner_url, service_role
):
    with faults.rls_refuses_insert(owner_url):
        response = pages.signup("carol@example.com", username="carol")
    assert response.status_code == 500
    assert "Something went wrong while saving your profile" in response.text
    assert "the service is not allowed to write the profile" in response.text
    assert "Nothing was created: there is no account for carol@example.com" in response.text
    assert "row-level security" not in response.text
    assert_no_trace(db, "carol@example.com")


# -- login, account, logout -----------------------------------------------------------------


def test_login_answers_an_unknown_email_and_a_wrong_password_alike(pages):
    pages.signup()
    pages.client.post("/logout", data={"csrf_token": pages.csrf("/account")})
    wrong = pages.login(password="not the right password")
    unknown = pages.login(email="nobody@example.com")
    for response in (wrong, unknown):
        assert response.status_code == 401
        assert "That email and password don&#39;t match an account" in response.text
        assert InvalidCredentials.code in response.text
    assert 'value="nobody@example.com"' in input_tag(unknown.text, "email")


def test_login_opens_a_session_and_lands_on_the_account(pages):
    pages.signup(display_name="Alice")
    pages.client.post("/logout", data={"csrf_token": pages.csrf("/account")})
    response = pages.login()
    assert response.status_code == 303 and response.headers["Location"].endswith("/account")
    assert "Alice" in pages.client.get("/account").text


def test_the_account_page_needs_a_session(client):
    response = client.get("/account")
    assert response.status_code == 302 and response.headers["Location"].endswith("/login")


def test_the_account_form_changes_the_display_name_and_username(pages, db):
    pages.signup(username="alice", display_name="Alice")
    response = pages.post("/account", display_name="Alice L.", username="alice_l")
    assert response.status_code == 303 and response.headers["Location"].endswith("?saved=1")
    row = db.execute("SELECT username, display_name FROM public.users").fetchone()
    assert row == {"username": "alice_l", "display_name": "Alice L."}
    page = pages.client.get("/account?saved=1").text
    assert "Your profile was saved." in page and "Alice L." in page


def test_the_account_form_explains_a_taken_username_next_to_it(pages, app, db):
    Pages(app.test_client()).signup("bob@example.com", username="bob")
    pages.signup(username="alice")
    response = pages.post("/account", display_name="", username="bob")
    assert response.status_code == 409
    assert "This username is taken" in field_html(response.text, "username")
    assert (
        db.execute(
            "SELECT username FROM public.users WHERE email = 'alice@example.com'"
        ).fetchone()["username"]
        == "alice"
    )


def test_logout_ends_the_session_on_the_server_not_only_in_the_browser(pages):
    pages.signup()
    signed_in = pages.cookie()
    response = pages.post("/logout", form="/account")
    assert response.status_code == 303 and "signed_out" in response.headers["Location"]
    assert pages.client.get("/account").status_code == 302
    assert "You have signed out." in pages.client.get("/login?signed_out=1").text
    # The old cookie, replayed, is worthless: its session was revoked.
    pages.client.set_cookie(COOKIE_NAME, signed_in)
    assert pages.client.get("/account").status_code == 302


def test_signing_out_everywhere_ends_every_session_of_the_user(app, pages):
    pages.signup()
    laptop = Pages(app.test_client())
    laptop.login()
    assert laptop.client.get("/account").status_code == 200
    response = pages.post("/logout", form="/account", scope="global")
    assert "signed_out_everywhere" in response.headers["Location"]
    assert laptop.client.get("/account").status_code == 302


def test_an_expired_access_token_is_refreshed_quietly_and_the_refresh_token_rotates(app, pages):
    pages.signup(display_name="Alice")
    held = tokens_in(app, pages.cookie())
    jar = app.extensions["authsvc.pages"]
    with app.test_request_context():
        claims = decode_token(held["at"])
        expired = create_access_token(
            identity=claims["sub"],
            additional_claims={"sid": claims["sid"]},
            expires_delta=timedelta(seconds=-60),
        )
    pages.client.set_cookie(COOKIE_NAME, jar._serializer.dumps({**held, "at": expired}))
    response = pages.client.get("/account")
    assert response.status_code == 200 and "Alice" in response.text
    rotated = tokens_in(
        app, SimpleCookie(set_cookie_header(response, COOKIE_NAME))[COOKIE_NAME].value
    )
    assert rotated["rt"] != held["rt"] and rotated["at"] != expired
    assert rotated["csrf"] == held["csrf"]  # forms already open stay valid


def test_the_login_page_applies_the_login_rate_limit(make_app):
    app = make_app(AUTHSVC_RATE_LIMITS="on", AUTHSVC_RATE_LIMIT_LOGIN="2 per minute")
    pages = Pages(app.test_client())
    for _ in range(2):
        assert pages.login("x@example.com", "wrong password!").status_code == 401
    response = pages.login("x@example.com", "wrong password!")
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) >= 1
    assert "Too many attempts" in response.text and RateLimited.code in response.text


def test_a_database_that_cannot_be_reached_is_explained_on_the_page(make_app):
    # A real refusal: nothing listens on this port.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app = make_app(
        DATABASE_URL=f"postgresql://authsvc:x@127.0.0.1:{port}/authsvc",
        AUTHSVC_DB_POOL_TIMEOUT="1",
        AUTHSVC_DB_CONNECT_TIMEOUT="1",
    )
    pages = Pages(app.test_client())
    response = pages.signup("dave@example.com")
    assert response.status_code == 503
    assert response.content_type.startswith("text/html")
    assert "We can&#39;t reach our database right now" in response.text
    assert "Nothing was changed" in response.text
    assert DatabaseUnavailable.code in response.text
    assert response.headers["Retry-After"]


BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def test_a_browser_lost_on_an_unknown_url_gets_a_page_and_clients_get_json(client):
    page = client.get("/acount", headers={"Accept": BROWSER_ACCEPT})
    assert page.status_code == 404 and page.mimetype == "text/html"
    text = page.get_data(as_text=True)
    assert "Start over" in text and page.headers["X-Request-ID"] in text
    # curl's */*, an API client, or any path under the API: the JSON envelope, as before.
    for path, accept in (
        ("/acount", "*/*"),
        ("/acount", "application/json"),
        ("/api/v1/x", BROWSER_ACCEPT),
    ):
        answer = client.get(path, headers={"Accept": accept})
        assert answer.status_code == 404 and answer.get_json()["error"]["code"] == "NOT_FOUND"
