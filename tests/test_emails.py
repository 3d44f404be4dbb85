"""One email, one account: addresses are validated and normalised by email-validator (trimmed,
NFC, lower-cased whole in Python), against the embedded cluster's C locale, whose lower()
folds ASCII only."""

from __future__ import annotations

import pytest

from authsvc.errors import EmailTaken, ValidationFailed
from tests.conftest import PASSWORD, count, identity_row
from tests.test_pages import Pages

JOSE = "jos\u00e9@example.com"  # é precomposed (NFC)


def test_the_test_database_lower_cases_ascii_only(db):
    # What makes the next tests bite: the database cannot be trusted to fold the address.
    assert db.execute("SELECT lower('JOS\u00c9') AS v").fetchone()["v"] == "jos\u00c9"


@pytest.mark.parametrize(
    "other",
    [
        "JOS\u00c9@example.com",  # upper case beyond ASCII
        "jose\u0301@example.com",  # e + combining acute (NFD)
        "JOSE\u0301@EXAMPLE.COM",
        "  Jos\u00e9@Example.com \n",
    ],
)
def test_every_form_of_one_address_is_one_account(auth, db, other):
    created = auth.signup(JOSE)["data"]["user"]
    assert created["email"] == JOSE
    body = auth.signup(other, expect=409)
    assert body["error"]["code"] == EmailTaken.code
    assert count(db, "auth.users") == 1 and count(db, "public.users") == 1


def test_the_address_is_stored_nfc_and_lower_cased_in_both_tables(auth, db):
    user = auth.signup("JOSE\u0301@Example.COM")["data"]["user"]
    assert user["email"] == JOSE
    identity = db.execute("SELECT email FROM auth.users WHERE id = %s", (user["id"],)).fetchone()
    profile = db.execute("SELECT email FROM public.users WHERE id = %s", (user["id"],)).fetchone()
    assert identity["email"] == profile["email"] == JOSE


def test_login_finds_the_account_by_any_form_of_its_address(auth):
    user_id = auth.signup("JOS\u00c9@example.com")["data"]["user"]["id"]
    for typed in (JOSE, "jose\u0301@EXAMPLE.com", " JOS\u00c9@example.com"):
        assert auth.login(typed)["data"]["user"]["id"] == user_id


def test_an_account_stored_before_normalisation_with_ascii_capitals_still_logs_in(auth, db):
    # Rows written before the address was lower-cased whole kept the local part as typed; the
    # lookup's lower() on both sides still matches them.
    user_id = auth.signup("ada@example.com")["data"]["user"]["id"]
    db.execute("UPDATE auth.users SET email = 'Ada@example.com' WHERE id = %s", (user_id,))
    assert auth.login("ADA@example.com")["data"]["user"]["id"] == user_id


REFUSED = {
    "zero width space": "ali\u200bce@example.com",
    "zero width joiner": "ali\u200dce@example.com",
    "byte order mark": "\ufeffalice@example.com",
    "right-to-left override": "alice\u202e@example.com",
    "left-to-right isolate": "al\u2066ice@example.com",
    "right-to-left isolate": "al\u2067ice@example.com",
    "first strong isolate": "al\u2068ice@example.com",
    "pop directional isolate": "al\u2069ice@example.com",
    "soft hyphen": "ali\u00adce@example.com",
    "word joiner": "ali\u2060ce@example.com",
    "bell": "ali\u0007ce@example.com",
    "escape": "alice\u001b@example.com",
    "delete": "alice\u007f@example.com",
    "nul": "ali\u0000ce@example.com",
    "line separator": "alice\u2028@example.com",
    "no-break space": "ali\u00a0ce@example.com",
    "private use": "alice\ue000@example.com",
    "unassigned": "alice\u0378@example.com",
    "leading combining mark": "\u0301alice@example.com",
    "zero width space in the domain": "alice@exa\u200bmple.com",
    "bidi override in the domain": "alice@example\u202e.com",
}


@pytest.mark.parametrize("address", REFUSED.values(), ids=REFUSED.keys())
def test_invisible_and_control_characters_are_refused_with_422(auth, db, address):
    body = auth.signup(address, expect=422)
    assert body["error"]["code"] == ValidationFailed.code
    assert body["error"]["details"]["email"]
    assert count(db, "auth.users") == 0 and count(db, "public.users") == 0
    login = auth.login(address, expect=422)
    assert login["error"]["code"] == ValidationFailed.code


def test_a_refused_address_is_not_the_same_as_the_visible_one(auth, db):
    auth.signup("alice@example.com")
    body = auth.signup("ali\u200bce@example.com", expect=422)
    assert "ZERO WIDTH SPACE" in body["error"]["details"]["email"][0]
    assert identity_row(db, "alice@example.com") is not None
    assert count(db, "auth.users") == 1


@pytest.mark.parametrize(
    "address",
    [
        "not-an-email",
        "a@b",
        "a@localhost",
        "a..b@example.com",
        '"a b"@example.com',
        "a@[127.0.0.1]",
        "@example.com",
        "a@",
        "a" * 250 + "@example.com",
    ],
)
def test_what_email_validator_refuses_is_422(auth, address):
    body = auth.signup(address, expect=422)
    assert body["error"]["details"]["email"][0].startswith("Not a valid email address.")


@pytest.fixture
def pages(client) -> Pages:
    return Pages(client)


def test_the_signup_form_normalises_the_same_way(pages, auth, db):
    auth.signup(JOSE)
    response = pages.signup("JOSE\u0301@example.com", username="jose")
    assert response.status_code == 409
    assert "An account with this email already exists" in response.text
    assert count(db, "auth.users") == 1


def test_the_signup_form_refuses_an_invisible_character_beside_the_field(pages, db):
    response = pages.signup("ali\u200bce@example.com")
    assert response.status_code == 422
    assert "invisible or control characters" in response.text
    assert count(db, "auth.users") == 0


def test_the_login_form_finds_the_account_by_another_form_of_its_address(pages, auth):
    auth.signup("JOS\u00c9@example.com", password=PASSWORD)
    response = pages.login("jose\u0301@example.com")
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/account")
