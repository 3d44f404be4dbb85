"""The admin API (/api/v1/admin/...) in one database and split: who may call it, and what each
operation does to both rows, the sessions and the audit log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from authsvc.config import ConfigError, load_settings
from authsvc.errors import (
    AuthRequired,
    Forbidden,
    InvalidCredentials,
    NotFound,
    TokenInvalid,
    TokenRevoked,
    UserBanned,
    ValidationFailed,
)
from tests.admin_support import ADMIN_HEADERS, ADMIN_KEY, bearer
from tests.conftest import PASSWORD

USERS = "/api/v1/admin/users"
LAST_INSTANT = "9999-12-31T23:59:59.999999Z"  # 'infinity' and beyond, as read


def code(response) -> str:
    return response.get_json()["error"]["code"]


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text)


# -- who may call it ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", USERS),
        ("GET", f"{USERS}/8d0c5d46-5f3c-4e7b-9a51-0b8f6f1f2a10"),
        ("POST", f"{USERS}/8d0c5d46-5f3c-4e7b-9a51-0b8f6f1f2a10/unban"),
        ("DELETE", f"{USERS}/8d0c5d46-5f3c-4e7b-9a51-0b8f6f1f2a10"),
        ("DELETE", f"{USERS}/8d0c5d46-5f3c-4e7b-9a51-0b8f6f1f2a10/sessions"),
        ("GET", "/api/v1/admin/audit"),
    ],
)
def test_the_admin_api_is_closed_without_the_role_or_the_key(deployment, method, path):
    _, user_token = deployment.signup("plain@example.com")
    client = deployment.client
    assert code(client.open(path, method=method)) == AuthRequired.code
    answer = client.open(path, method=method, headers=bearer(user_token))
    assert answer.status_code == 403 and code(answer) == Forbidden.code
    wrong_key = client.open(path, method=method, headers=bearer(ADMIN_KEY[:-1] + "x"))
    assert wrong_key.status_code == 401 and code(wrong_key) == TokenInvalid.code
    assert deployment.events("user_deleted") == [] and deployment.events("user_unbanned") == []


def test_the_admin_key_opens_it_and_only_while_it_is_configured(deployment):
    deployment.signup("someone@example.com")
    listed = deployment.client.get(USERS, headers=ADMIN_HEADERS)
    assert listed.status_code == 200, listed.get_json()
    assert [u["email"] for u in listed.get_json()["data"]["users"]] == ["someone@example.com"]
    without_key = deployment.build(AUTHSVC_ADMIN_KEY="").test_client()
    refused = without_key.get(USERS, headers=ADMIN_HEADERS)
    assert refused.status_code == 401 and code(refused) == TokenInvalid.code


def test_the_admin_role_opens_it_until_it_is_taken_back(deployment):
    from uuid import UUID

    from authsvc.services import admin, audit

    token = deployment.make_admin("boss@example.com")
    answer = deployment.client.get(USERS, headers=bearer(token))
    assert answer.status_code == 200
    (boss,) = answer.get_json()["data"]["users"]
    assert boss["roles"] == ["admin"] and boss["email"] == "boss@example.com"
    admin.set_role(deployment.stores, audit.CLI, UUID(boss["id"]), "admin", False)
    assert deployment.client.get(USERS, headers=bearer(token)).status_code == 403
    granted = deployment.events("role_granted")
    assert [(e["actor"], str(e["user_id"]), e["details"]) for e in granted] == [
        ("cli", boss["id"], {"role": "admin"})
    ]


def test_production_refuses_a_weak_admin_key_and_development_warns():
    env = {
        "AUTHSVC_ENV": "production",
        "DATABASE_URL": "postgresql://db/x",
        "JWT_SECRET_KEY": "Zx8#kQ2$wL9@mN4!pR7&tV1*yB6^cD3%",
        "AUTHSVC_ADMIN_KEY": "admin",
    }
    with pytest.raises(ConfigError, match="AUTHSVC_ADMIN_KEY is too weak"):
        load_settings(env)
    assert load_settings({**env, "AUTHSVC_ADMIN_KEY": ADMIN_KEY}).admin_key == ADMIN_KEY
    development = load_settings({**env, "AUTHSVC_ENV": "development"})
    assert any("AUTHSVC_ADMIN_KEY is weak" in w for w in development.warnings)
    assert "admin-key" not in repr(load_settings({**env, "AUTHSVC_ADMIN_KEY": ADMIN_KEY}))


# -- listing and showing ---------------------------------------------------------------------------


def test_users_are_listed_newest_first_by_cursor_and_searched_by_email(deployment):
    for name in ("ann", "bob", "anna", "carl", "joanne"):
        deployment.signup(f"{name}@example.com", username=name)
    seen, cursor = [], None
    while True:
        query = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = deployment.client.get(USERS, query_string=query, headers=ADMIN_HEADERS)
        assert page.status_code == 200, page.get_json()
        data = page.get_json()["data"]
        assert len(data["users"]) <= 2
        seen += [u["username"] for u in data["users"]]
        cursor = data["next_cursor"]
        if cursor is None:
            break
    assert seen == ["joanne", "carl", "anna", "bob", "ann"]
    found = deployment.client.get(USERS, query_string={"q": "ANN"}, headers=ADMIN_HEADERS)
    assert [u["email"] for u in found.get_json()["data"]["users"]] == [
        "joanne@example.com",
        "anna@example.com",
        "ann@example.com",
    ]
    user = found.get_json()["data"]["users"][0]
    assert user["has_profile"] and user["signup_state"] == "complete"
    assert user["banned"] is False and user["roles"] == [] and user["last_sign_in_at"] is None


@pytest.mark.parametrize(
    "query",
    [{"cursor": "garbage!"}, {"limit": 0}, {"limit": 101}, {"limit": "many"}, {"q": ""}],
)
def test_a_bad_listing_query_is_a_422(deployment, query):
    answer = deployment.client.get(USERS, query_string=query, headers=ADMIN_HEADERS)
    assert answer.status_code == 422 and code(answer) == ValidationFailed.code


def test_one_user_shows_both_rows_and_whether_they_agree(deployment):
    user_id, _ = deployment.signup("shown@example.com", username="shown")
    answer = deployment.client.get(f"{USERS}/{user_id}", headers=ADMIN_HEADERS)
    data = answer.get_json()["data"]
    assert data["consistent"] is True
    assert data["identity"]["email"] == data["profile"]["email"] == "shown@example.com"
    assert data["profile"]["username"] == data["user"]["username"] == "shown"
    assert "password_hash" not in data["identity"]
    deployment.sql(
        deployment.profile_owner_url, "DELETE FROM public.users WHERE id = %s", (user_id,)
    )
    drifted = deployment.client.get(f"{USERS}/{user_id}", headers=ADMIN_HEADERS)
    data = drifted.get_json()["data"]
    assert data["consistent"] is False and data["profile"] is None
    assert data["user"]["has_profile"] is False
    missing = deployment.client.get(
        f"{USERS}/8d0c5d46-5f3c-4e7b-9a51-0b8f6f1f2a10", headers=ADMIN_HEADERS
    )
    assert missing.status_code == 404 and code(missing) == NotFound.code
    not_an_id = deployment.client.get(f"{USERS}/not-a-uuid", headers=ADMIN_HEADERS)
    assert not_an_id.status_code == 404


def test_an_anonymous_user_shows_and_lists_with_its_two_halves_agreeing(deployment):
    created = deployment.client.post("/api/v1/auth/anonymous", json={})
    assert created.status_code == 201, created.get_json()
    user_id = created.get_json()["data"]["user"]["id"]
    answer = deployment.client.get(f"{USERS}/{user_id}", headers=ADMIN_HEADERS)
    assert answer.status_code == 200, answer.get_json()
    data = answer.get_json()["data"]
    assert data["consistent"] is True
    assert data["identity"]["email"] is None and data["profile"]["email"] is None
    listed = deployment.client.get(USERS, headers=ADMIN_HEADERS).get_json()["data"]["users"]
    assert [u["id"] for u in listed] == [user_id]


# -- bans, sessions, deletion ----------------------------------------------------------------------


def test_a_ban_ends_every_session_at_once_and_refuses_logins_until_lifted(deployment):
    user_id, token = deployment.signup("troll@example.com")
    refresh = deployment.auth.login("troll@example.com")["data"]["session"]["refresh_token"]
    before = datetime.now(UTC)
    answer = deployment.client.post(
        f"{USERS}/{user_id}/ban", json={"duration_seconds": 3600}, headers=ADMIN_HEADERS
    )
    assert answer.status_code == 200, answer.get_json()
    user = answer.get_json()["data"]["user"]
    assert user["banned"] is True
    assert before + timedelta(minutes=59) < parse_time(user["banned_until"])
    assert deployment.identity(user_id)["banned_until"] > before + timedelta(minutes=59)
    (event,) = deployment.events("user_banned")
    assert event["details"]["banned_until"] == user["banned_until"]  # RFC 3339, as answered
    assert code(deployment.auth.me(token)) == TokenRevoked.code
    reused = deployment.client.post("/api/v1/auth/refresh", json={"refresh_token": refresh})
    assert reused.status_code == 401
    assert deployment.auth.login("troll@example.com", expect=403)["error"]["code"] == (
        UserBanned.code
    )
    open_sessions = deployment.sql(
        deployment.identity_owner_url,
        "SELECT count(*) AS n FROM authsvc.sessions WHERE user_id = %s AND revoked_at IS NULL",
        (user_id,),
    )
    assert open_sessions == [{"n": 0}]
    lifted = deployment.client.post(f"{USERS}/{user_id}/unban", headers=ADMIN_HEADERS)
    assert lifted.get_json()["data"]["user"]["banned"] is False
    assert deployment.identity(user_id)["banned_until"] is None
    deployment.auth.login("troll@example.com")
    (banned,) = deployment.events("user_banned")
    assert banned["actor"] == "admin_key" and banned["details"]["sessions_revoked"] == 2
    assert banned["details"]["duration_seconds"] == 3600
    assert [str(e["user_id"]) for e in deployment.events("user_unbanned")] == [user_id]


@pytest.mark.parametrize("until", ["'infinity'", "now() + interval '10000 years'"])
def test_a_ban_past_the_year_9999_set_in_sql_is_shown_as_a_ban(deployment, until):
    user_id, token = deployment.signup("forever@example.com")
    deployment.sql(
        deployment.identity_owner_url,
        f"UPDATE auth.users SET banned_until = {until} WHERE id = %s",
        (user_id,),
    )
    shown = deployment.client.get(f"{USERS}/{user_id}", headers=ADMIN_HEADERS)
    assert shown.status_code == 200, shown.get_json()
    data = shown.get_json()["data"]
    assert data["user"]["banned"] is True
    assert data["user"]["banned_until"] == data["identity"]["banned_until"] == LAST_INSTANT
    listed = deployment.client.get(USERS, headers=ADMIN_HEADERS)
    assert listed.status_code == 200, listed.get_json()
    assert [u["banned_until"] for u in listed.get_json()["data"]["users"]] == [LAST_INSTANT]
    assert code(deployment.auth.me(token)) == UserBanned.code


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"duration_seconds": 0},
        {"duration_seconds": "3600"},
        {"duration_seconds": 3600.5},
        {"duration_seconds": True},
        {"duration_seconds": 10**12},
        {"duration_seconds": 60, "reason": "x"},
    ],
)
def test_a_ban_needs_a_sane_duration(deployment, body):
    user_id, token = deployment.signup("kept@example.com")
    answer = deployment.client.post(f"{USERS}/{user_id}/ban", json=body, headers=ADMIN_HEADERS)
    assert answer.status_code == 422 and code(answer) == ValidationFailed.code
    assert deployment.auth.me(token).status_code == 200


def test_a_duration_written_as_a_whole_float_is_an_integer_as_json_schema_says(deployment):
    user_id, token = deployment.signup("floated@example.com")
    body = {"duration_seconds": 3600.0}
    answer = deployment.client.post(f"{USERS}/{user_id}/ban", json=body, headers=ADMIN_HEADERS)
    assert answer.status_code == 200, answer.get_json()
    (banned,) = deployment.events("user_banned")
    assert banned["details"]["duration_seconds"] == 3600
    assert isinstance(banned["details"]["duration_seconds"], int)


def test_banning_or_unbanning_nobody_is_a_404(deployment):
    nobody = "8d0c5d46-5f3c-4e7b-9a51-0b8f6f1f2a10"
    ban = deployment.client.post(
        f"{USERS}/{nobody}/ban", json={"duration_seconds": 60}, headers=ADMIN_HEADERS
    )
    unban = deployment.client.post(f"{USERS}/{nobody}/unban", headers=ADMIN_HEADERS)
    revoke = deployment.client.delete(f"{USERS}/{nobody}/sessions", headers=ADMIN_HEADERS)
    delete = deployment.client.delete(f"{USERS}/{nobody}", headers=ADMIN_HEADERS)
    assert {r.status_code for r in (ban, unban, revoke, delete)} == {404}


def test_revoking_sessions_ends_them_all_and_says_how_many(deployment):
    user_id, first = deployment.signup("many@example.com")
    second = deployment.auth.login("many@example.com")["data"]["session"]["access_token"]
    other_id, other = deployment.signup("other@example.com")
    answer = deployment.client.delete(f"{USERS}/{user_id}/sessions", headers=ADMIN_HEADERS)
    assert answer.get_json()["data"] == {"revoked": 2}
    assert {code(deployment.auth.me(t)) for t in (first, second)} == {TokenRevoked.code}
    assert deployment.auth.me(other).status_code == 200
    deployment.auth.login("many@example.com")  # a ban it is not
    (event,) = deployment.events("sessions_revoked")
    assert str(event["user_id"]) == user_id and event["details"] == {"sessions_revoked": 2}


def test_an_admin_deletes_both_rows_and_the_sessions(deployment):
    admin_token = deployment.make_admin("boss@example.com")
    user_id, token = deployment.signup("leaving@example.com", username="leaving")
    answer = deployment.client.delete(f"{USERS}/{user_id}", headers=bearer(admin_token))
    assert answer.status_code == 200 and answer.get_json()["data"] == {}
    assert deployment.identity(user_id) is None and deployment.profile(user_id) is None
    assert code(deployment.auth.me(token)) == TokenRevoked.code
    assert deployment.auth.login("leaving@example.com", expect=401)["error"]["code"] == (
        InvalidCredentials.code
    )
    again = deployment.client.get(f"{USERS}/{user_id}", headers=bearer(admin_token))
    assert again.status_code == 404
    deployment.signup("leaving@example.com", username="leaving")  # email and username are free
    (deleted,) = deployment.events("user_deleted")
    boss = deployment.auth.login("boss@example.com")["data"]["user"]["id"]
    assert (deleted["actor"], str(deleted["actor_id"])) == ("admin", boss)
    assert deleted["details"]["reason"] == "deleted_by_admin"
    assert deleted["details"]["profile_removed"] is True


# -- the audit log ---------------------------------------------------------------------------------


def test_the_audit_log_pages_newest_first_by_user_and_type(deployment):
    alice, _ = deployment.signup("alice@example.com")
    bob, _ = deployment.signup("bob@example.com")
    for _ in range(3):
        deployment.auth.login("alice@example.com")
    deployment.auth.login("bob@example.com", "wrong password, surely", expect=401)
    answer = deployment.client.get(
        "/api/v1/admin/audit", query_string={"user_id": alice, "limit": 2}, headers=ADMIN_HEADERS
    )
    data = answer.get_json()["data"]
    assert [e["type"] for e in data["events"]] == ["login", "login"]
    rest = deployment.client.get(
        "/api/v1/admin/audit",
        headers=ADMIN_HEADERS,
        query_string={"user_id": alice, "cursor": data["next_cursor"]},
    ).get_json()["data"]
    assert [e["type"] for e in rest["events"]] == ["login", "signup"]
    assert rest["next_cursor"] is None
    failed = deployment.client.get(
        "/api/v1/admin/audit", query_string={"type": "login_failed"}, headers=ADMIN_HEADERS
    ).get_json()["data"]["events"]
    assert [(e["user_id"], e["details"]) for e in failed] == [
        (None, {"reason": "invalid_credentials"})
    ]
    everything = deployment.client.get("/api/v1/admin/audit", headers=ADMIN_HEADERS)
    types = [e["type"] for e in everything.get_json()["data"]["events"]]
    assert types.count("signup") == 2 and types.count("login") == 3
    assert bob in {e["user_id"] for e in everything.get_json()["data"]["events"]}


@pytest.mark.parametrize(
    "query",
    [{"user_id": "nope"}, {"type": "DROP TABLE"}, {"cursor": "!!"}, {"limit": 1000}],
)
def test_a_bad_audit_query_is_a_422(deployment, query):
    answer = deployment.client.get("/api/v1/admin/audit", query_string=query, headers=ADMIN_HEADERS)
    assert answer.status_code == 422 and code(answer) == ValidationFailed.code


def test_an_admin_token_of_a_banned_admin_stops_working(deployment):
    token = deployment.make_admin("boss@example.com")
    boss = deployment.auth.login("boss@example.com")["data"]["user"]["id"]
    deployment.client.post(
        f"{USERS}/{boss}/ban", json={"duration_seconds": 60}, headers=ADMIN_HEADERS
    )
    answer = deployment.client.get(USERS, headers=bearer(token))
    assert answer.status_code == 401 and code(answer) == TokenRevoked.code
    assert PASSWORD  # the password itself is never needed by the admin API


def test_the_openapi_document_lists_every_admin_operation_with_its_security(deployment):
    spec = deployment.client.get("/api/v1/openapi.json").get_json()
    assert spec["components"]["securitySchemes"]["adminKey"]["scheme"] == "bearer"
    admin_ops = [
        (path, method, op)
        for path, item in spec["paths"].items()
        if path.startswith("/api/v1/admin/")
        for method, op in item.items()
        if method != "parameters"
    ]
    assert {(path, method) for path, method, _ in admin_ops} == {
        ("/api/v1/admin/users", "get"),
        ("/api/v1/admin/users/{user_id}", "get"),
        ("/api/v1/admin/users/{user_id}", "delete"),
        ("/api/v1/admin/users/{user_id}/ban", "post"),
        ("/api/v1/admin/users/{user_id}/unban", "post"),
        ("/api/v1/admin/users/{user_id}/sessions", "delete"),
        ("/api/v1/admin/audit", "get"),
    }
    for path, method, op in admin_ops:
        assert op["security"] == [{"bearerAuth": []}, {"adminKey": []}], (path, method)
        assert {"401", "403", "500", "503"} <= set(op["responses"]), (path, method)
        assert "FORBIDDEN" in op["responses"]["403"]["description"]
    close = spec["paths"]["/api/v1/auth/me"]["delete"]
    assert close["security"] == [{"bearerAuth": []}]
    assert "DELETION_FAILED" in close["responses"]["500"]["description"]
    assert "REAUTHENTICATION_REQUIRED" in close["responses"]["401"]["description"]
