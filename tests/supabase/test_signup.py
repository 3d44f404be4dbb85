"""The signup saga against Supabase, with the fault matrix injected at the HTTP layer."""

from __future__ import annotations

import json
from uuid import UUID

import httpx
import pytest

from authsvc.errors import (
    DatabaseUnavailable,
    EmailTaken,
    SignupFailed,
    UsernameTaken,
    WeakPassword,
)
from tests.conftest import PASSWORD, count
from tests.supabase import fake as sb
from tests.supabase.fake import ANON_KEY, SERVICE_KEY, FakeSupabase


def created_id(fake: FakeSupabase) -> str:
    """The UUID authsvc chose for the identity it tried to create."""
    return fake.bodies("create_user")[-1]["id"]


def assert_no_trace(fake: FakeSupabase, email: str) -> None:
    assert all(u["email"] != email.lower() for u in fake.users.values()), "identity remains"
    assert all(p["email"].lower() != email.lower() for p in fake.profiles.values()), (
        "profile remains"
    )


def signup_failed(body: dict) -> dict:
    assert body["error"]["code"] == SignupFailed.code, body
    return body["error"]["details"]


# -- the happy path --------------------------------------------------------------------------


def test_signup_creates_the_supabase_user_and_its_profile_with_one_id(auth, fake, sessions_db):
    body = auth.signup("Alice@Example.COM", username="alice", display_name="Alice")
    user = body["data"]["user"]
    assert fake.users[user["id"]]["email"] == "alice@example.com"
    assert fake.state(user["id"]) == "complete"
    assert fake.profiles[user["id"]]["email"] == "alice@example.com"
    assert fake.profiles[user["id"]]["username"] == "alice"
    assert user["email_confirmed"] is False  # confirmed by the mailed link, never by default
    assert body["data"]["session"]["access_token"] and body["data"]["session"]["refresh_token"]
    assert count(sessions_db, "authsvc.sessions") == 1
    row = sessions_db.execute("SELECT user_id FROM authsvc.sessions").fetchone()
    assert str(row["user_id"]) == user["id"]


def test_create_user_carries_our_uuid_the_argon2_hash_and_the_pending_marker(auth, fake):
    user_id = auth.signup(username="alice", display_name="Alice")["data"]["user"]["id"]
    (request,) = fake.requests("create_user")
    body = json.loads(request.content)
    assert body == {
        "id": user_id,
        "email": "alice@example.com",
        "password_hash": body["password_hash"],
        "email_confirm": False,
        "user_metadata": {"username": "alice", "display_name": "Alice"},
        # What the signup asked for, where only the service role can write it: a lost profile
        # is recreated from here, never from user_metadata.
        "app_metadata": {
            "authsvc_signup": "pending",
            "authsvc_profile": {"username": "alice", "display_name": "Alice"},
        },
    }
    assert body["password_hash"].startswith("$argon2id$")
    assert PASSWORD not in request.content.decode()
    assert request.headers["Authorization"] == f"Bearer {SERVICE_KEY}"
    assert request.headers["apikey"] == SERVICE_KEY
    assert request.headers["X-Supabase-Api-Version"] == "2024-01-01"


def test_profile_insert_sends_the_explicit_uuid_and_asks_for_the_row_back(auth, fake):
    user_id = auth.signup(username="alice")["data"]["user"]["id"]
    (request,) = fake.requests("insert_profile")
    assert json.loads(request.content) == {
        "id": user_id,
        "email": "alice@example.com",
        "username": "alice",
        "display_name": None,
    }
    assert request.headers["Prefer"] == "return=representation"
    assert request.headers["Authorization"] == f"Bearer {SERVICE_KEY}"


def test_the_marker_flips_to_complete_only_after_the_profile_is_verified(auth, fake):
    user_id = auth.signup()["data"]["user"]["id"]
    names = fake.sequence
    assert names.index("create_user") < names.index("insert_profile") < names.index("update_user")
    (update,) = fake.bodies("update_user")
    assert update == {"app_metadata": {"authsvc_signup": "complete"}}
    assert fake.requests("update_user")[0].url.path == f"/auth/v1/admin/users/{user_id}"


def test_email_confirm_follows_the_setting(sessions_url, tmp_path, fake):
    from authsvc import create_app
    from tests.supabase.conftest import supabase_env

    # Off by default: marking an address confirmed without proof is a pre-account-takeover
    # risk wherever OAuth or magic links link accounts by verified email. On is an opt-in.
    app = create_app(supabase_env(sessions_url, tmp_path, AUTHSVC_SUPABASE_EMAIL_CONFIRM="on"))
    try:
        response = app.test_client().post(
            "/api/v1/auth/signup", json={"email": "a@example.com", "password": PASSWORD}
        )
    finally:
        app.extensions["authsvc"].stores.close()
    assert response.status_code == 201
    assert fake.bodies("create_user")[0]["email_confirm"] is True
    assert response.get_json()["data"]["user"]["email_confirmed"] is True
    assert fake.requests("generate_link") == []  # nothing to confirm: no mail


def test_a_retried_signup_with_the_same_idempotency_key_creates_one_user(auth, fake):
    first = auth.signup(headers={"Idempotency-Key": "k-1"})
    second = auth.signup(headers={"Idempotency-Key": "k-1"}, expect=201)
    assert first["data"]["user"]["id"] == second["data"]["user"]["id"]
    assert len(fake.requests("create_user")) == 1


# -- identity_create fails -------------------------------------------------------------------


def test_a_taken_email_is_409_and_creates_nothing(auth, fake):
    first = auth.signup("alice@example.com")["data"]["user"]["id"]
    body = auth.signup("ALICE@example.com", expect=409)
    assert body["error"]["code"] == EmailTaken.code
    assert list(fake.users) == [first] and list(fake.profiles) == [first]
    # Supabase refused the user, so there was nothing to compensate.
    assert fake.requests("delete_user") == []
    assert len(fake.requests("insert_profile")) == 1


def test_supabase_weak_password_is_422_with_the_reasons(auth, fake):
    # GoTrue's adminUserCreate does not check strength today (and ignores it for a
    # password_hash); a project that rejects the password anyway answers like this.
    fake.fail("create_user", sb.weak_password(["length", "pwned"]))
    body = auth.signup(expect=422)
    assert body["error"]["code"] == WeakPassword.code
    assert len(body["error"]["details"]["password"]) == 2
    assert fake.requests("delete_user") == [] and fake.users == {}


def test_our_password_policy_runs_before_supabase_is_asked(auth, fake):
    body = auth.signup(password="short", expect=422)
    assert body["error"]["code"] == WeakPassword.code
    assert fake.all_requests() == []


def test_a_supabase_auth_500_names_identity_create_and_removes_what_may_have_landed(auth, fake):
    fake.fail(
        "create_user", sb.auth_error(500, "unexpected_failure", "Database error creating new user")
    )
    details = signup_failed(auth.signup(expect=500))
    assert details["step"] == "identity_create"
    assert details["reason"] == "auth_server_error"
    assert details["compensated"] is True
    # The answer was an error, but the user could have been written: delete by our id.
    (delete,) = fake.requests("delete_user")
    assert delete.url.path == f"/auth/v1/admin/users/{created_id(fake)}"
    assert json.loads(delete.content) == {"should_soft_delete": False}  # a hard delete
    assert fake.requests("insert_profile") == []


def test_supabase_auth_unavailable_is_503(auth, fake):
    fake.fail("create_user", sb.auth_json(503, {"message": "upstream unavailable"}))
    body = auth.signup(expect=503)
    assert body["error"]["code"] == DatabaseUnavailable.code
    assert body["error"]["details"]["database"] == "supabase_auth"
    assert len(fake.requests("delete_user")) == 1


def test_a_connection_that_never_opened_needs_no_compensation(auth, fake):
    fake.fail("create_user", httpx.ConnectError("connection refused"))
    body = auth.signup(expect=503)
    assert body["error"]["code"] == DatabaseUnavailable.code
    assert fake.requests("delete_user") == []


# -- profile_insert fails ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (lambda uid: sb.fk_violation(uid), "foreign_key_violation"),
        (lambda uid: sb.pkey_violation(uid), "unique_violation"),
        (lambda uid: sb.rls_violation(), "permission_denied"),
        (lambda uid: sb.permission_denied(), "permission_denied"),
        (
            lambda uid: sb.rest_error(
                400, "23514", 'new row for relation "users" violates check constraint'
            ),
            "check_violation",
        ),
        (lambda uid: sb.rest_error(400, "P0001", "profiles are closed"), "trigger_raised"),
        (
            lambda uid: sb.rest_error(
                404, "PGRST205", "Could not find the table 'public.users' in the schema cache"
            ),
            "undefined_table",
        ),
    ],
    ids=["23503", "23505-pkey", "42501-rls", "42501-grant", "23514", "P0001", "PGRST205"],
)
def test_a_failed_profile_insert_names_its_reason_and_removes_the_identity(
    auth, fake, answer, reason
):
    fake.fail("insert_profile", lambda request: answer(json.loads(request.content)["id"]))
    details = signup_failed(auth.signup("bob@example.com", expect=500))
    assert details == {
        "step": "profile_insert",
        "reason": reason,
        "compensated": True,
        "hint": details["hint"],
    }
    user_id = created_id(fake)
    assert [r.url.path for r in fake.requests("delete_user")] == [f"/auth/v1/admin/users/{user_id}"]
    (delete_profile,) = fake.requests("delete_profile")
    assert delete_profile.url.params["id"] == f"eq.{user_id}"
    assert_no_trace(fake, "bob@example.com")


def test_a_taken_username_is_409_and_the_losers_identity_is_deleted(auth, fake):
    winner = auth.signup("alice@example.com", username="alice")["data"]["user"]["id"]
    body = auth.signup("bob@example.com", username="alice", expect=409)
    assert body["error"]["code"] == UsernameTaken.code
    assert list(fake.users) == [winner]
    assert_no_trace(fake, "bob@example.com")
    assert fake.requests("delete_user")[0].url.path.endswith(created_id(fake))


def test_a_rest_gateway_failure_is_503_after_compensating(auth, fake):
    fake.fail("insert_profile", httpx.Response(502, text="<html>Bad Gateway</html>"))
    body = auth.signup(expect=503)
    assert body["error"]["code"] == DatabaseUnavailable.code
    assert body["error"]["details"]["database"] == "supabase_rest"
    assert fake.users == {}


# -- profile_verify fails ----------------------------------------------------------------------


def test_an_empty_representation_is_a_failure_never_a_silent_success(auth, fake):
    # What PostgREST answers when a BEFORE INSERT trigger returns NULL: 201 and no row.
    fake.fail("insert_profile", sb.rest_json(201, []))
    details = signup_failed(auth.signup(expect=500))
    assert details["step"] == "profile_verify"
    assert details["reason"] == "no_row_returned"
    assert details["compensated"] is True
    assert fake.users == {} and fake.profiles == {}
    assert len(fake.requests("delete_profile")) == 1
    assert fake.requests("update_user") == []


def test_a_row_with_another_id_is_a_failure(auth, fake):
    other = "00000000-0000-4000-8000-000000000000"
    fake.fail(
        "insert_profile",
        sb.rest_json(
            201,
            [
                {
                    "id": other,
                    "email": "alice@example.com",
                    "username": None,
                    "display_name": None,
                    "created_at": None,
                    "updated_at": None,
                }
            ],
        ),
    )
    details = signup_failed(auth.signup(expect=500))
    assert (details["step"], details["reason"]) == ("profile_verify", "id_mismatch")
    assert fake.users == {}


# -- complete fails ----------------------------------------------------------------------------


def test_a_failed_completion_removes_both_halves(auth, fake):
    fake.fail("update_user", sb.auth_error(500, "unexpected_failure", "Error updating user"))
    details = signup_failed(auth.signup(expect=500))
    assert (details["step"], details["compensated"]) == ("complete", True)
    assert fake.users == {} and fake.profiles == {}


def test_an_identity_removed_under_the_signup_fails_it_at_complete(auth, fake):
    # `authsvc reconcile --repair` with a grace period shorter than this signup took it.
    fake.fail("update_user", sb.auth_error(404, "user_not_found", "User not found"))
    details = signup_failed(auth.signup(expect=500))
    assert (details["step"], details["reason"]) == ("complete", "identity_missing")
    assert fake.users == {} and fake.profiles == {}


# -- compensation fails ------------------------------------------------------------------------


def test_a_failed_compensation_is_recorded_and_reconcile_finishes_it(auth, fake, cli_env, capsys):
    from authsvc.cli import main

    fake.fail("insert_profile", sb.rls_violation())
    fake.fail(
        "delete_user", sb.auth_error(500, "unexpected_failure", "Database error deleting user")
    )
    details = signup_failed(auth.signup("bob@example.com", expect=500))
    assert details["compensated"] is False
    assert details["reason"] == "permission_denied"
    user_id = created_id(fake)
    # The pending identity is the durable record of the half-user...
    assert fake.state(user_id) == "pending" and user_id not in fake.profiles
    # ...which cannot log in...
    assert auth.login("bob@example.com", expect=401)["error"]["code"] == "INVALID_CREDENTIALS"
    # ...and which reconcile removes once it is past the grace period.
    fake.age(user_id, 3600)
    capsys.readouterr()
    assert main(["reconcile", "--repair", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["identities_without_profile"]["ids"] == [user_id]
    assert result["repaired"]["identities_removed"] == 1
    assert user_id not in fake.users
    assert [r.url.path for r in fake.requests("delete_user")] == [
        f"/auth/v1/admin/users/{user_id}"
    ] * 2


def test_the_service_key_is_never_in_a_response_or_a_log_line(auth, fake, capsys):
    fake.fail("insert_profile", sb.rls_violation())
    fake.fail("delete_user", sb.auth_error(500, "unexpected_failure", "boom"))
    body = auth.signup(expect=500)
    captured = capsys.readouterr()
    for secret in (SERVICE_KEY, ANON_KEY):
        assert secret not in json.dumps(body)
        assert secret not in captured.err + captured.out
    assert UUID(created_id(fake))
