"""The signup saga through the API, with faults injected through real database objects."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from authsvc.errors import EmailTaken, SignupFailed, UsernameTaken, ValidationFailed, WeakPassword
from tests import faults
from tests.conftest import (
    PASSWORD,
    TABLES,
    assert_no_trace,
    count,
    identity_row,
    profile_row,
)


def test_signup_creates_the_identity_and_its_profile_with_one_id(auth, db):
    body = auth.signup("Alice@Example.COM", username="alice", display_name="Alice")
    user = body["data"]["user"]
    assert body["success"] is True
    assert user["email"] == "alice@example.com"  # the whole address lower-cased
    identity = identity_row(db, "alice@example.com")
    profile = profile_row(db, user["id"])
    assert str(identity["id"]) == user["id"] == str(profile["id"])
    assert identity["signup_state"] == "complete"
    assert identity["password_hash"].startswith("$argon2id$")
    assert PASSWORD not in identity["password_hash"]
    assert profile["username"] == "alice" and profile["display_name"] == "Alice"
    assert identity["raw_user_meta_data"] == {"username": "alice", "display_name": "Alice"}
    session = body["data"]["session"]
    assert session["token_type"] == "bearer" and session["expires_in"] == 900
    assert session["access_token"] and session["refresh_token"]


def test_signup_answers_the_user_object_of_the_contract(auth):
    user = auth.signup(username="alice")["data"]["user"]
    assert set(user) == {
        "id",
        "email",
        "username",
        "display_name",
        "email_confirmed",
        "is_anonymous",
        "created_at",
    }
    assert user["email_confirmed"] is False and user["is_anonymous"] is False
    assert user["created_at"].endswith("Z")


def test_duplicate_email_is_409_whatever_its_case_and_leaves_one_account(auth, db):
    auth.signup("alice@example.com")
    body = auth.signup("  ALICE@EXAMPLE.com ", expect=409)
    assert body["error"]["code"] == EmailTaken.code
    assert count(db, "auth.users") == 1 and count(db, "public.users") == 1


def test_duplicate_username_is_409_and_compensates_the_identity(auth, db):
    auth.signup("alice@example.com", username="alice")
    body = auth.signup("bob@example.com", username="alice", expect=409)
    assert body["error"]["code"] == UsernameTaken.code
    assert_no_trace(db, "bob@example.com")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"password": PASSWORD}, "email"),
        ({"email": "a@example.com"}, "password"),
        ({"email": None, "password": PASSWORD}, "email"),
        ({"email": "not-an-email", "password": PASSWORD}, "email"),
        ({"email": "a@example.com", "password": 12345678}, "password"),
        ({"email": "a@example.com", "password": None}, "password"),
        ({"email": "a@example.com", "password": PASSWORD, "username": "Al"}, "username"),
        ({"email": "a@example.com", "password": PASSWORD, "username": "has space"}, "username"),
        ({"email": "a@example.com", "password": PASSWORD, "username": None}, "username"),
        ({"email": "a@example.com", "password": PASSWORD, "display_name": ""}, "display_name"),
        (
            {"email": "a@example.com", "password": PASSWORD, "display_name": "x" * 101},
            "display_name",
        ),
        (
            {"email": "a@example.com", "password": PASSWORD, "display_name": "a\u0000b"},
            "display_name",
        ),
        (
            {"email": "a@example.com", "password": PASSWORD, "display_name": "Eve\u202egnp.exe"},
            "display_name",
        ),
        (
            {"email": "a@example.com", "password": PASSWORD, "display_name": "Ali\u200bce"},
            "display_name",
        ),
        (
            {"email": "a@example.com", "password": PASSWORD, "display_name": "\u200d\u200c"},
            "display_name",
        ),
        ({"email": "a@example.com", "password": PASSWORD, "is_admin": True}, "is_admin"),
        ({"email": ["a@example.com"], "password": PASSWORD}, "email"),
        ({"email": "a" * 250 + "@example.com", "password": PASSWORD}, "email"),
    ],
)
def test_invalid_signup_bodies_are_422_naming_the_field_and_write_nothing(client, db, body, field):
    response = client.post("/api/v1/auth/signup", json=body)
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == ValidationFailed.code
    assert field in error["details"]
    assert count(db, "auth.users") == 0 and count(db, "public.users") == 0


@pytest.mark.parametrize(
    "name",
    [
        "\U0001f468\u200d\U0001f469\u200d\U0001f467",  # a family: three emoji joined by ZWJ
        "\U0001f3f3\ufe0f\u200d\U0001f308",  # the rainbow flag
        "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",  # Persian, with a ZWNJ
        "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",  # Scotland
    ],
)
def test_display_names_keep_the_joiners_of_scripts_and_emoji(auth, db, name):
    body = auth.signup(display_name=name)
    assert body["data"]["user"]["display_name"] == name
    row = db.execute("SELECT display_name FROM public.users").fetchone()
    assert row["display_name"] == name


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("short1!", "at least 8"),
        ("x" * 129, "at most 128"),
        ("password123", "too common"),
        ("aaaaaaaaaaaa", "too common"),
        ("alice-in-chains-1", "email"),
    ],
)
def test_weak_passwords_are_refused_with_reasons(auth, db, password, reason):
    body = auth.signup("alice@example.com", password=password, expect=422)
    assert body["error"]["code"] == WeakPassword.code
    assert any(reason in r for r in body["error"]["details"]["password"])
    assert_no_trace(db, "alice@example.com")


# -- compensation, with faults injected through real database objects ------------------------


def _signup_failed(auth, email="victim@example.com", **fields):
    body = auth.signup(email, expect=500, **fields)
    error = body["error"]
    assert error["code"] == SignupFailed.code
    assert error["request_id"]
    return error


def test_signup_compensates_when_a_trigger_raises_on_the_profile_insert(auth, db, owner_url):
    with faults.profile_insert_raises(owner_url):
        error = _signup_failed(auth)
    assert error["details"]["step"] == "profile_insert"
    assert error["details"]["reason"] == "trigger_raised"
    assert error["details"]["compensated"] is True
    assert "profile_insert" in error["message"]
    assert "profile insert refused" not in str(error)  # no SQL or driver text leaks
    assert_no_trace(db, "victim@example.com")


def test_signup_compensates_when_the_profile_insert_returns_no_row(auth, db, owner_url):
    with faults.profile_insert_returns_null(owner_url):
        error = _signup_failed(auth)
    assert error["details"] == {
        "step": "profile_verify",
        "reason": "no_row_returned",
        "compensated": True,
        "hint": error["details"]["hint"],
    }
    assert "no row" in error["details"]["hint"]
    assert_no_trace(db, "victim@example.com")


def test_signup_compensates_when_a_trigger_rewrites_the_returned_row(auth, db, owner_url):
    with faults.profile_email_rewritten(owner_url):
        error = _signup_failed(auth)
    assert error["details"]["step"] == "profile_verify"
    assert error["details"]["reason"] == "email_mismatch"
    assert_no_trace(db, "victim@example.com")
    assert count(db, "public.users") == 0


def test_signup_compensates_when_a_not_valid_check_constraint_refuses_the_row(auth, db, owner_url):
    with faults.not_valid_check(owner_url):
        error = _signup_failed(auth)
    assert error["details"]["step"] == "profile_insert"
    assert error["details"]["reason"] == "check_violation"
    assert error["details"]["compensated"] is True
    assert_no_trace(db, "victim@example.com")


def test_signup_compensates_when_the_identity_insert_is_refused(auth, db, owner_url):
    with faults.not_valid_check(owner_url, table="auth.users"):
        error = _signup_failed(auth)
    assert error["details"]["step"] == "identity_create"
    assert error["details"]["reason"] == "check_violation"
    assert_no_trace(db, "victim@example.com")


def test_signup_reports_a_connection_killed_mid_insert_and_leaves_nothing(auth, db, owner_url):
    with faults.profile_insert_sleeps(owner_url, 2), faults.terminate_when_sleeping(owner_url, 0.5):
        error = _signup_failed(auth)
    assert error["details"]["step"] == "profile_insert"
    assert error["details"]["reason"] == "connection_lost"
    assert error["details"]["compensated"] is True
    assert_no_trace(db, "victim@example.com")
    # The pool recovers without a restart.
    auth.signup("after@example.com")


# The service's role is refused by the database itself: row-level security without a policy for
# it, or a privilege taken away. Only a role that is not a superuser, does not bypass RLS and
# does not own the tables meets these (the `service_role` fixture checks that it is one).
PRIVILEGE_FAULTS = [
    (lambda url: faults.rls_refuses_insert(url, "public.users"), "profile_insert"),
    (lambda url: faults.revoked(url, "INSERT", "public.users"), "profile_insert"),
    (lambda url: faults.rls_refuses_insert(url, "auth.users"), "identity_create"),
    (lambda url: faults.revoked(url, "INSERT", "auth.users"), "identity_create"),
    (lambda url: faults.revoked(url, "UPDATE", "auth.users"), "complete"),
]
PRIVILEGE_FAULT_IDS = [
    "rls-profile",
    "revoked-profile-insert",
    "rls-identity",
    "revoked-identity-insert",
    "revoked-identity-update",
]


@pytest.mark.parametrize(("fault", "step"), PRIVILEGE_FAULTS, ids=PRIVILEGE_FAULT_IDS)
def test_signup_refused_by_the_roles_privileges_names_the_step_and_leaves_nothing(
    auth, db, owner_url, service_role, fault, step
):
    with fault(owner_url):
        error = _signup_failed(auth, username="victim")
    assert error["details"] == {
        "step": step,
        "reason": "permission_denied",
        "compensated": True,
        "hint": "the database role lacks a privilege or a row-level security policy refused "
        "the row",
    }
    # The database's own words stay in the log.
    assert "violates" not in str(error) and "permission denied for" not in str(error)
    assert_no_trace(db, "victim@example.com")
    for table in TABLES:
        assert count(db, table) == 0, f"{table} kept a row of the refused signup"
    # Nothing blocks the email or the username once the privilege is back.
    auth.signup("victim@example.com", username="victim")
    auth.login("victim@example.com")


def test_a_failed_signup_can_be_retried_with_the_same_email(auth, db, owner_url):
    with faults.profile_insert_raises(owner_url):
        _signup_failed(auth, "retry@example.com")
    auth.signup("retry@example.com")
    assert identity_row(db, "retry@example.com")["signup_state"] == "complete"


def test_parallel_signups_with_one_email_give_exactly_one_account(app, db):
    def attempt(i: int):
        with app.test_client() as c:
            return c.post(
                "/api/v1/auth/signup",
                json={"email": "race@example.com", "password": PASSWORD, "username": f"racer_{i}"},
            ).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(attempt, range(8)))
    assert statuses.count(201) == 1
    assert statuses.count(409) == 7
    assert count(db, "auth.users") == 1 and count(db, "public.users") == 1


def test_parallel_signups_with_one_username_give_exactly_one_account(app, db):
    def attempt(i: int):
        with app.test_client() as c:
            return c.post(
                "/api/v1/auth/signup",
                json={"email": f"u{i}@example.com", "password": PASSWORD, "username": "same_name"},
            ).get_json()

    with ThreadPoolExecutor(max_workers=8) as pool:
        bodies = list(pool.map(attempt, range(8)))
    assert sum(b["success"] for b in bodies) == 1
    assert {b["error"]["code"] for b in bodies if not b["success"]} == {UsernameTaken.code}
    assert count(db, "auth.users") == 1 and count(db, "public.users") == 1
