"""Login, refresh, me and logout when the identities live in Supabase Auth."""

from __future__ import annotations

import json

from authsvc.errors import (
    DatabaseUnavailable,
    InvalidCredentials,
    RateLimited,
    RefreshTokenReused,
    TokenRevoked,
    UsernameTaken,
)
from tests.conftest import PASSWORD, latest_migration
from tests.supabase import fake as sb
from tests.supabase.fake import ANON_KEY, SERVICE_KEY, claims


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_login_checks_the_password_with_supabase_and_answers_our_own_session(auth, fake):
    user_id = auth.signup(username="alice")["data"]["user"]["id"]
    body = auth.login()
    assert body["data"]["user"]["id"] == user_id
    assert body["data"]["user"]["username"] == "alice"
    session = body["data"]["session"]
    # Our token, not Supabase's.
    assert session["access_token"] not in fake.sessions and session["expires_in"] == 900
    (token,) = fake.requests("token")
    assert token.url.params["grant_type"] == "password"
    assert json.loads(token.content)["email"] == "alice@example.com"
    assert json.loads(token.content)["password"] == PASSWORD
    assert token.headers["Authorization"] == f"Bearer {ANON_KEY}"
    assert token.headers["apikey"] == ANON_KEY


def confirm(fake, user_id: str) -> None:
    """The user confirmed its address (Supabase Auth opens sessions only for those)."""
    fake.users[user_id]["email_confirmed_at"] = "2026-01-01T00:00:00Z"


def test_the_supabase_session_a_sign_in_opens_is_revoked_at_once(auth, fake):
    confirm(fake, auth.signup()["data"]["user"]["id"])
    auth.login()
    (logout,) = fake.requests("logout")
    assert logout.url.params["scope"] == "local"
    assert fake.sessions == {} and len(fake.revoked) == 1


def test_each_sign_in_uses_a_fresh_client_and_no_session_leaks_into_another_request(
    app, auth, fake
):
    alice = auth.signup("alice@example.com")["data"]["user"]["id"]
    bob = auth.signup("bob@example.com")["data"]["user"]["id"]
    confirm(fake, alice)
    confirm(fake, bob)
    auth.login("alice@example.com")
    auth.login("bob@example.com")
    token_requests = fake.requests("token")
    assert [r.headers["Authorization"] for r in token_requests] == [f"Bearer {ANON_KEY}"] * 2
    # Each revocation carries its own user's token: bob's sign-in never saw alice's session.
    assert [
        claims(r.headers["Authorization"].split()[1])["sub"] for r in fake.requests("logout")
    ] == [
        alice,
        bob,
    ]
    # Everything else (admin API, PostgREST) went out with the service role key, before and
    # after the sign-ins.
    others = [r for r in fake.all_requests() if not r.url.path.endswith(("/token", "/logout"))]
    assert others and all(r.headers["Authorization"] == f"Bearer {SERVICE_KEY}" for r in others)
    clients = app.extensions["authsvc"].stores.identities.clients
    assert clients.service().options.headers["Authorization"] == f"Bearer {SERVICE_KEY}"
    assert auth.signup("carol@example.com", expect=201)


def test_a_wrong_password_and_an_unknown_email_answer_alike(auth, fake):
    auth.signup()
    wrong = auth.login(password="not the password at all", expect=401)["error"]
    unknown = auth.login("nobody@example.com", expect=401)["error"]
    assert wrong["code"] == unknown["code"] == InvalidCredentials.code
    assert wrong["message"] == unknown["message"]


def test_a_banned_user_is_told_invalid_credentials(auth, fake):
    auth.signup()
    # Supabase Auth answers user_banned before it checks the password, so telling it apart
    # would reveal the ban to anyone who knows the email.
    fake.fail("token", sb.auth_error(400, "user_banned", "User is banned"))
    assert auth.login(expect=401)["error"]["code"] == InvalidCredentials.code


def test_a_pending_identity_cannot_log_in(auth, fake):
    from argon2 import PasswordHasher

    user_id = fake.add_user(
        "pending@example.com", state="pending", password_hash=PasswordHasher().hash(PASSWORD)
    )
    fake.add_profile(user_id, "pending@example.com")
    body = auth.login("pending@example.com", expect=401)
    assert body["error"]["code"] == InvalidCredentials.code
    assert fake.state(user_id) == "pending"


def test_a_user_created_outside_authsvc_logs_in_and_gets_a_profile(auth, fake):
    from argon2 import PasswordHasher

    user_id = fake.add_user(
        "old@example.com", state=None, password_hash=PasswordHasher().hash(PASSWORD)
    )
    body = auth.login("old@example.com")
    assert body["data"]["user"]["id"] == user_id
    assert fake.profiles[user_id]["email"] == "old@example.com"


def test_supabase_rate_limiting_a_sign_in_is_429_with_retry_after(auth, fake, client):
    auth.signup()
    fake.fail("token", sb.auth_error(429, "over_request_rate_limit", "Request rate limit reached"))
    response = client.post(
        "/api/v1/auth/login", json={"email": "alice@example.com", "password": PASSWORD}
    )
    assert response.status_code == 429
    assert response.get_json()["error"]["code"] == RateLimited.code
    assert response.headers["Retry-After"] == "60"


def test_supabase_auth_unreachable_at_login_is_503(auth, fake):
    auth.signup()
    fake.fail("token", sb.auth_json(503, {"message": "upstream connect error"}))
    assert auth.login(expect=503)["error"]["code"] == DatabaseUnavailable.code


def test_refresh_rotates_and_a_reused_token_ends_the_session(auth, client, fake, sessions_db):
    session = auth.signup()["data"]["session"]
    first = client.post("/api/v1/auth/refresh", json={"refresh_token": session["refresh_token"]})
    assert first.status_code == 200
    rotated = first.get_json()["data"]["session"]
    assert rotated["refresh_token"] != session["refresh_token"]
    # Past the reuse interval, a spent token presented again is theft.
    sessions_db.execute(
        "UPDATE authsvc.refresh_tokens SET used_at = used_at - interval '1 minute'"
        " WHERE used_at IS NOT NULL"
    )
    reused = client.post("/api/v1/auth/refresh", json={"refresh_token": session["refresh_token"]})
    assert reused.get_json()["error"]["code"] == RefreshTokenReused.code
    again = client.post("/api/v1/auth/refresh", json={"refresh_token": rotated["refresh_token"]})
    assert again.status_code == 401


def test_me_reads_both_halves_and_patch_updates_the_profile(auth, client, fake):
    token = auth.signup(username="alice")["data"]["session"]["access_token"]
    me = auth.me(token).get_json()["data"]["user"]
    assert me["username"] == "alice" and me["email"] == "alice@example.com"
    response = client.patch(
        "/api/v1/auth/me", json={"display_name": "Alice A."}, headers=bearer(token)
    )
    assert response.status_code == 200
    assert response.get_json()["data"]["user"]["display_name"] == "Alice A."
    assert fake.profiles[me["id"]]["display_name"] == "Alice A."
    (patch,) = fake.requests("update_profile")
    assert patch.url.params["id"] == f"eq.{me['id']}"
    assert set(json.loads(patch.content)) == {"display_name", "updated_at"}


def test_patch_me_with_a_taken_username_is_409(auth, client, fake):
    auth.signup("bob@example.com", username="bob")
    token = auth.signup(username="alice")["data"]["session"]["access_token"]
    response = client.patch("/api/v1/auth/me", json={"username": "bob"}, headers=bearer(token))
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == UsernameTaken.code


def test_logout_revokes_our_session(auth, client, fake):
    token = auth.signup()["data"]["session"]["access_token"]
    assert client.post("/api/v1/auth/logout", json={}, headers=bearer(token)).status_code == 200
    assert auth.me(token).get_json()["error"]["code"] == TokenRevoked.code


def test_a_user_deleted_in_supabase_loses_access(auth, fake):
    body = auth.signup()
    del fake.users[body["data"]["user"]["id"]]
    response = auth.me(body["data"]["session"]["access_token"])
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == TokenRevoked.code


def test_readyz_and_version_in_supabase_mode(client, fake):
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.get_json()
    assert ready.get_json()["data"]["checks"] == {"database": "ok", "migrations": "ok"}
    version = client.get("/version").get_json()["data"]
    assert version["backend"] == "supabase"
    assert version["schema_version"] == latest_migration("sessions")
    assert fake.all_requests() == []  # readiness never depends on Supabase being up


def test_a_ban_in_supabase_auth_stops_me_and_refresh_at_once(auth, client, fake, sessions_db):
    from datetime import UTC, datetime, timedelta

    from authsvc.errors import UserBanned

    body = auth.signup()["data"]
    session, user_id = body["session"], body["user"]["id"]
    assert auth.me(session["access_token"]).status_code == 200
    # An operator bans the user in Supabase (the dashboard, or the admin API's ban_duration).
    until = datetime.now(UTC) + timedelta(hours=1)
    fake.users[user_id]["banned_until"] = until.isoformat().replace("+00:00", "Z")
    me = auth.me(session["access_token"])
    assert me.status_code == 403 and me.get_json()["error"]["code"] == UserBanned.code
    refreshed = client.post(
        "/api/v1/auth/refresh", json={"refresh_token": session["refresh_token"]}
    )
    assert refreshed.status_code == 403 and refreshed.get_json()["error"]["code"] == UserBanned.code
    used = sessions_db.execute(
        "SELECT count(*) AS n FROM authsvc.refresh_tokens WHERE used_at IS NOT NULL"
    ).fetchone()["n"]
    assert used == 0  # nothing was rotated for a banned user
