"""Login, refresh rotation with reuse detection, logout, and the profile endpoints."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import jwt
import pytest

from authsvc.errors import (
    AuthRequired,
    InvalidCredentials,
    RefreshTokenReused,
    TokenExpired,
    TokenInvalid,
    TokenRevoked,
    UserBanned,
    UsernameTaken,
    ValidationFailed,
)
from tests import faults
from tests.conftest import PASSWORD, identity_row, profile_row


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def session_of(body: dict) -> dict:
    return body["data"]["session"]


def test_login_returns_the_user_and_a_session(auth, db):
    user_id = auth.signup(username="alice")["data"]["user"]["id"]
    body = auth.login("ALICE@example.com")
    assert body["data"]["user"]["id"] == user_id
    assert body["data"]["user"]["username"] == "alice"
    session = session_of(body)
    assert session["token_type"] == "bearer"
    assert session["expires_at"] > 0 and session["expires_in"] == 900
    assert identity_row(db, "alice@example.com")["last_sign_in_at"] is not None


def test_unknown_email_and_wrong_password_are_answered_alike(auth):
    auth.signup()
    wrong = auth.login(password="wrong password entirely", expect=401)["error"]
    unknown = auth.login("nobody@example.com", expect=401)["error"]
    assert wrong["code"] == unknown["code"] == InvalidCredentials.code
    assert wrong["message"] == unknown["message"]
    assert set(wrong) == set(unknown)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"email": "a@example.com"},
        {"email": "a@example.com", "password": None},
        {"email": "a@example.com", "password": "x", "remember": True},
    ],
)
def test_login_validates_its_body(client, body):
    response = client.post("/api/v1/auth/login", json=body)
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == ValidationFailed.code


def test_a_banned_user_cannot_log_in(auth, db):
    auth.signup()
    db.execute("UPDATE auth.users SET banned_until = now() + interval '1 day'")
    body = auth.login(expect=403)
    assert body["error"]["code"] == UserBanned.code


def test_an_expired_ban_no_longer_blocks(auth, db):
    auth.signup()
    db.execute("UPDATE auth.users SET banned_until = now() - interval '1 day'")
    auth.login()


def test_a_pending_identity_never_gets_a_session(auth, db):
    auth.signup()
    # A signup that died after the identity and before completion.
    db.execute("UPDATE auth.users SET signup_state = 'pending'")
    db.execute("DELETE FROM public.users")
    assert auth.login(expect=401)["error"]["code"] == InvalidCredentials.code
    assert db.execute("SELECT count(*) AS n FROM authsvc.sessions").fetchone()["n"] == 1


def test_a_pending_identity_with_its_profile_still_gets_no_session(auth, db):
    # The process died between the profile and `complete`: the client never got its 201.
    auth.signup()
    db.execute(
        "UPDATE auth.users SET signup_state = 'pending', created_at = now() - interval '1 day'"
    )
    assert auth.login(expect=401)["error"]["code"] == InvalidCredentials.code
    assert db.execute("SELECT signup_state FROM auth.users").fetchone()["signup_state"] == (
        "pending"
    )


def test_login_gives_a_complete_identity_its_missing_profile_back(auth, db):
    user_id = auth.signup(username="alice")["data"]["user"]["id"]
    db.execute("ALTER TABLE public.users DISABLE TRIGGER ALL")
    try:
        db.execute("DELETE FROM public.users")
    finally:
        db.execute("ALTER TABLE public.users ENABLE TRIGGER ALL")
    body = auth.login()
    assert body["data"]["user"]["id"] == user_id
    assert profile_row(db, user_id)["email"] == "alice@example.com"


def test_login_rehashes_a_password_hashed_with_older_parameters(app, auth, db):
    from authsvc.passwords import Hasher

    auth.signup()
    # A hash made with other parameters (m=16), as an older deployment would have stored.
    legacy = Hasher(1, 16, 1).hash(PASSWORD)
    db.execute("UPDATE auth.users SET password_hash = %s", (legacy,))
    auth.login()
    upgraded = identity_row(db, "alice@example.com")["password_hash"]
    assert upgraded != legacy and "m=8," in upgraded
    auth.login()  # and the new hash verifies


def test_a_login_whose_rehash_another_login_won_still_gets_its_session(app, auth, db, database_url):
    """Two logins upgrade one outdated hash at once: the second finds the hash already
    replaced (by the same password, rehashed) and still gets its session."""
    from authsvc.passwords import Hasher

    user_id = auth.signup()["data"]["user"]["id"]
    db.execute("UPDATE auth.users SET password_hash = %s", (Hasher(1, 16, 1).hash(PASSWORD),))
    rehashed_elsewhere = app.extensions["authsvc"].hasher.hash(PASSWORD)
    # The other login's upgrade, holding the row: this login verifies the old hash, then its
    # own upgrade waits, then finds the hash already replaced.
    response = faults.racing(
        database_url,
        lambda other: other.execute(
            "SELECT 1 FROM auth.users WHERE id = %s FOR UPDATE", (user_id,)
        ),
        lambda: auth.client.post(
            "/api/v1/auth/login", json={"email": "alice@example.com", "password": PASSWORD}
        ),
        "login",
        before_commit=lambda other: other.execute(
            "UPDATE auth.users SET password_hash = %s WHERE id = %s", (rehashed_elsewhere, user_id)
        ),
    )
    assert response.status_code == 200, response.get_json()
    assert identity_row(db, "alice@example.com")["password_hash"] == rehashed_elsewhere


def test_me_returns_the_signed_in_user(auth):
    token = session_of(auth.signup(username="alice"))["access_token"]
    response = auth.me(token)
    assert response.status_code == 200
    assert response.get_json()["data"]["user"]["username"] == "alice"


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "bEaReR"])
def test_the_bearer_scheme_is_read_in_any_case(auth, client, scheme):
    token = session_of(auth.signup())["access_token"]
    response = client.get("/api/v1/auth/me", headers={"Authorization": f"{scheme} {token}"})
    assert response.status_code == 200, response.get_json()
    bad = client.get("/api/v1/auth/me", headers={"Authorization": f"{scheme} not.a.jwt"})
    assert bad.get_json()["error"]["code"] == TokenInvalid.code


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, AuthRequired.code),
        ({"Authorization": "Basic abc"}, AuthRequired.code),
        ({"Authorization": "Bearer not.a.jwt"}, TokenInvalid.code),
        # "Bearer" with no token carries no credentials at all.
        ({"Authorization": "Bearer "}, AuthRequired.code),
        ({"Authorization": "Bearer"}, AuthRequired.code),
        ({"Authorization": "Bearer not a.jwt"}, TokenInvalid.code),
        # Exactly one Bearer credential, among comma-separated ones.
        ({"Authorization": "Bearer a.b.c, Bearer d.e.f"}, AuthRequired.code),
        ({"Authorization": "Basic abc, Bearer not.a.jwt"}, TokenInvalid.code),
    ],
)
def test_me_without_a_valid_token_is_401(client, headers, code):
    response = client.get("/api/v1/auth/me", headers=headers)
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == code


@pytest.mark.parametrize("header", ["Bearer  {}", " Bearer {} ", "Basic abc, Bearer {}"])
def test_the_bearer_token_is_found_as_flask_jwt_extended_finds_it(auth, client, header):
    token = session_of(auth.signup())["access_token"]
    response = client.get("/api/v1/auth/me", headers={"Authorization": header.format(token)})
    assert response.status_code == 200, response.get_json()


def test_a_token_of_ours_that_is_not_an_access_token_is_invalid(app, auth):
    from flask_jwt_extended import create_refresh_token

    token = session_of(auth.signup())["access_token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    with app.app_context():
        other = create_refresh_token(claims["sub"], additional_claims={"sid": claims["sid"]})
    assert auth.me(other).get_json()["error"]["code"] == TokenInvalid.code


def test_a_token_signed_with_another_key_is_invalid(app, auth):
    import jwt

    auth.signup()
    forged = jwt.encode(
        {"sub": "x", "sid": "y", "type": "access"}, "another-key" * 4, algorithm="HS256"
    )
    assert auth.me(forged).get_json()["error"]["code"] == TokenInvalid.code


def test_an_expired_access_token_is_401_token_expired(database_url, tmp_path):
    from authsvc import create_app
    from tests.conftest import AuthActions, app_overrides

    app = create_app(app_overrides(database_url, tmp_path, AUTHSVC_ACCESS_TOKEN_TTL="10"))
    auth = AuthActions(app.test_client())
    token = session_of(auth.signup())["access_token"]
    import jwt

    claims = jwt.decode(token, options={"verify_signature": False})
    claims["exp"] = claims["iat"] - 60
    expired = jwt.encode(claims, app.config["JWT_SECRET_KEY"], algorithm="HS256")
    assert auth.me(expired).get_json()["error"]["code"] == TokenExpired.code
    app.extensions["authsvc"].stores.close()


def test_patch_me_changes_username_and_display_name(auth, db):
    body = auth.signup(username="alice")
    token, user_id = session_of(body)["access_token"], body["data"]["user"]["id"]
    response = auth.client.patch(
        "/api/v1/auth/me",
        json={"username": "alice_2", "display_name": "  Alice B  "},
        headers=bearer(token),
    )
    assert response.status_code == 200, response.get_json()
    user = response.get_json()["data"]["user"]
    assert user["username"] == "alice_2" and user["display_name"] == "Alice B"
    row = profile_row(db, user_id)
    assert row["username"] == "alice_2" and row["updated_at"] > row["created_at"]


def test_patch_me_to_a_taken_username_is_409(auth):
    auth.signup("bob@example.com", username="bob")
    token = session_of(auth.signup(username="alice"))["access_token"]
    response = auth.client.patch("/api/v1/auth/me", json={"username": "bob"}, headers=bearer(token))
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == UsernameTaken.code


@pytest.mark.parametrize(
    "body",
    [{"username": "NO"}, {"email": "x@example.com"}, {"display_name": None}, {"username": 5}],
)
def test_patch_me_validates_its_body(auth, body):
    token = session_of(auth.signup())["access_token"]
    response = auth.client.patch("/api/v1/auth/me", json=body, headers=bearer(token))
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == ValidationFailed.code


def test_patch_me_requires_a_token(client):
    response = client.patch("/api/v1/auth/me", json={"display_name": "x"})
    assert response.status_code == 401


# -- refresh ------------------------------------------------------------------------------------


def refresh(client, token: str):
    return client.post("/api/v1/auth/refresh", json={"refresh_token": token})


def test_refresh_rotates_the_refresh_token(auth, db):
    first = session_of(auth.signup())
    response = refresh(auth.client, first["refresh_token"])
    assert response.status_code == 200
    second = response.get_json()["data"]["session"]
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert auth.me(second["access_token"]).status_code == 200
    third = refresh(auth.client, second["refresh_token"]).get_json()["data"]["session"]
    assert auth.me(third["access_token"]).status_code == 200
    # The refresh tokens are stored hashed only.
    stored = db.execute("SELECT token_hash FROM authsvc.refresh_tokens").fetchall()
    assert all(first["refresh_token"].encode() not in bytes(r["token_hash"]) for r in stored)


def _past_the_reuse_interval(db) -> None:
    """Move every spent refresh token's first use past AUTHSVC_REFRESH_REUSE_INTERVAL (10 s)."""
    db.execute(
        "UPDATE authsvc.refresh_tokens SET used_at = used_at - interval '11 seconds' "
        "WHERE used_at IS NOT NULL"
    )


def test_reusing_a_refresh_token_revokes_the_whole_session(auth, db):
    first = session_of(auth.signup())
    second = refresh(auth.client, first["refresh_token"]).get_json()["data"]["session"]
    _past_the_reuse_interval(db)
    reused = refresh(auth.client, first["refresh_token"])
    assert reused.status_code == 401
    assert reused.get_json()["error"]["code"] == RefreshTokenReused.code
    # Every token of that session is dead now, including the legitimate newest ones.
    assert auth.me(second["access_token"]).get_json()["error"]["code"] == TokenRevoked.code
    assert refresh(auth.client, second["refresh_token"]).get_json()["error"]["code"] == (
        TokenRevoked.code
    )
    # Another session of the same user is untouched.
    other = session_of(auth.login())
    assert auth.me(other["access_token"]).status_code == 200


def test_a_token_presented_again_within_the_reuse_interval_gets_a_new_pair(auth, db):
    first = session_of(auth.signup())
    second = session_of_refresh(refresh(auth.client, first["refresh_token"]))
    # A retried request, or a second tab: the same spent token again, at once.
    again = session_of_refresh(refresh(auth.client, first["refresh_token"]))
    assert again["refresh_token"] not in (first["refresh_token"], second["refresh_token"])
    for session in (second, again):  # nothing was revoked: both pairs work
        assert auth.me(session["access_token"]).status_code == 200
    assert refresh(auth.client, second["refresh_token"]).status_code == 200
    assert refresh(auth.client, again["refresh_token"]).status_code == 200
    assert (
        db.execute(
            "SELECT count(*) AS n FROM authsvc.sessions WHERE revoked_at IS NOT NULL"
        ).fetchone()["n"]
        == 0
    )


def test_a_spent_token_presented_after_logout_within_the_interval_is_revoked_not_reuse(auth, db):
    """Within the reuse interval a spent token is not theft (API.md); once its session is
    logged out it is simply revoked, and no reuse is recorded."""
    first = session_of(auth.signup())
    second = session_of_refresh(refresh(auth.client, first["refresh_token"]))
    logged_out = auth.client.post(
        "/api/v1/auth/logout", json={}, headers=bearer(second["access_token"])
    )
    assert logged_out.status_code == 200, logged_out.get_json()
    again = refresh(auth.client, first["refresh_token"])
    assert again.status_code == 401
    assert again.get_json()["error"]["code"] == TokenRevoked.code
    reuse = db.execute(
        "SELECT count(*) AS n FROM authsvc.audit_events WHERE type = 'refresh_reused'"
    ).fetchone()["n"]
    assert reuse == 0
    revoked = db.execute("SELECT revoked_reason FROM authsvc.sessions").fetchall()
    assert [r["revoked_reason"] for r in revoked] == ["logout"]


def test_parallel_refreshes_with_one_token_all_keep_the_session(app, auth):
    token = session_of(auth.signup())["refresh_token"]

    def attempt(_):
        with app.test_client() as c:
            return refresh(c, token).get_json()

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(attempt, range(4)))
    assert all(r["success"] for r in results), results
    tokens = {r["data"]["session"]["refresh_token"] for r in results}
    assert len(tokens) == 4  # each got its own new token, in the same session
    assert all(auth.me(r["data"]["session"]["access_token"]).status_code == 200 for r in results)


def test_concurrent_reuse_after_the_interval_lets_none_through(app, auth, db):
    token = session_of(auth.signup())["refresh_token"]
    assert refresh(auth.client, token).status_code == 200
    _past_the_reuse_interval(db)

    def attempt(_):
        with app.test_client() as c:
            return refresh(c, token).get_json()

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(attempt, range(4)))
    assert not any(r["success"] for r in results)
    assert {r["error"]["code"] for r in results} == {RefreshTokenReused.code}


def session_of_refresh(response):
    assert response.status_code == 200, response.get_json()
    return response.get_json()["data"]["session"]


def test_an_unknown_refresh_token_is_invalid(client):
    response = refresh(client, "made-up-token")
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == TokenInvalid.code


def test_an_expired_refresh_token_is_token_expired(auth, db):
    token = session_of(auth.signup())["refresh_token"]
    db.execute("UPDATE authsvc.refresh_tokens SET expires_at = now() - interval '1 second'")
    response = refresh(auth.client, token)
    assert response.get_json()["error"]["code"] == TokenExpired.code


def test_refresh_validates_its_body(client):
    response = client.post("/api/v1/auth/refresh", json={"refresh_token": ""})
    assert response.status_code == 422


# -- logout -------------------------------------------------------------------------------------


def test_logout_revokes_the_current_session_only(auth):
    one = session_of(auth.signup())
    two = session_of(auth.login())
    response = auth.client.post("/api/v1/auth/logout", headers=bearer(one["access_token"]))
    assert response.status_code == 200
    assert response.get_json() == {"success": True, "data": {}}
    assert auth.me(one["access_token"]).get_json()["error"]["code"] == TokenRevoked.code
    assert refresh(auth.client, one["refresh_token"]).get_json()["error"]["code"] == (
        TokenRevoked.code
    )
    assert auth.me(two["access_token"]).status_code == 200


def test_global_logout_revokes_every_session_of_the_user(auth):
    one = session_of(auth.signup())
    two = session_of(auth.login())
    bob = session_of(auth.signup("bob@example.com"))
    response = auth.client.post(
        "/api/v1/auth/logout", json={"scope": "global"}, headers=bearer(two["access_token"])
    )
    assert response.status_code == 200
    for session in (one, two):
        assert auth.me(session["access_token"]).get_json()["error"]["code"] == TokenRevoked.code
    assert auth.me(bob["access_token"]).status_code == 200


def test_logout_rejects_an_unknown_scope(auth):
    token = session_of(auth.signup())["access_token"]
    response = auth.client.post(
        "/api/v1/auth/logout", json={"scope": "everywhere"}, headers=bearer(token)
    )
    assert response.status_code == 422


def test_logout_needs_a_token(client):
    response = client.post("/api/v1/auth/logout")
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == AuthRequired.code


def test_a_deleted_account_loses_its_sessions(auth, db):
    session = session_of(auth.signup())
    db.execute("DELETE FROM auth.users")
    assert auth.me(session["access_token"]).status_code == 401
    assert refresh(auth.client, session["refresh_token"]).status_code == 401


@pytest.mark.parametrize(
    "claims", [{"aud": "someone-else"}, {"iss": "someone-else"}, {"aud": None}, {"iss": None}]
)
def test_a_token_for_another_audience_or_issuer_is_refused(app, auth, claims):
    import jwt as pyjwt

    from tests.conftest import TEST_SECRET

    token = session_of(auth.signup())["access_token"]
    payload = pyjwt.decode(token, options={"verify_signature": False})
    assert (payload["iss"], payload["aud"]) == ("authsvc", "authsvc")
    for key, value in claims.items():
        if value is None:
            payload.pop(key)
        else:
            payload[key] = value
    header = pyjwt.get_unverified_header(token)
    forged = pyjwt.encode(payload, TEST_SECRET, algorithm="HS256", headers={"kid": header["kid"]})
    response = auth.me(forged)
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == TokenInvalid.code
    assert auth.me(token).status_code == 200  # the genuine one still works


def test_a_login_a_password_change_lands_under_gets_no_session(deployment):
    """A password change (or reset) commits while a login is between checking the old
    password and starting its session: the login is refused as for a wrong password, and no
    session outlives the change. The change is held open by hand (the row updated, not yet
    committed): the login still reads the old hash, then waits for this row's lock."""
    user_id, _ = deployment.signup("changing@example.com")
    response = faults.racing(
        deployment.identity_owner_url,
        lambda change: change.execute(
            "UPDATE auth.users SET password_hash = 'replaced' WHERE id = %s", (user_id,)
        ),
        lambda: deployment.client.post(
            "/api/v1/auth/login", json={"email": "changing@example.com", "password": PASSWORD}
        ),
        "login",
    )
    assert response.status_code == 401, response.get_json()
    assert response.get_json()["error"]["code"] == InvalidCredentials.code
    sessions = deployment.sql(
        deployment.identity_owner_url,
        "SELECT 1 FROM authsvc.sessions s JOIN auth.users u ON u.id = s.user_id "
        "WHERE s.user_id = %s",
        (user_id,),
    )
    # Only the signup's own session, which the change would revoke with the rest.
    assert len(sessions) == 1
