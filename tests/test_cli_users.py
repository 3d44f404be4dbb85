"""`authsvc users ...`, run as an operator runs it (a subprocess with the environment), in one
database and split."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from typing import Any

import pytest

from authsvc.errors import TokenRevoked, UserBanned
from tests.admin_support import Deployment, bearer
from tests.conftest import TEST_SECRET

AUTHSVC = (
    [shutil.which("authsvc")] if shutil.which("authsvc") else [sys.executable, "-m", "authsvc.cli"]
)


def users(deployment: Deployment, *args: str) -> subprocess.CompletedProcess:
    app_url, auth_url = deployment.service_urls
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTHSVC_", "DATABASE_URL"))}
    env.update(
        DATABASE_URL=app_url,
        AUTH_DATABASE_URL=auth_url,
        JWT_SECRET_KEY=TEST_SECRET,
        AUTHSVC_DATA_DIR=str(deployment.data_dir / "cli"),
    )
    return subprocess.run(
        [*AUTHSVC, "users", *args], env=env, capture_output=True, text=True, timeout=120
    )


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return result.stdout


def test_an_operator_grants_admin_lists_shows_and_the_grant_opens_the_admin_api(deployment):
    boss_id, _ = deployment.signup("boss@example.com")
    deployment.signup("ann@example.com", username="ann")
    assert "granted admin" in ok(users(deployment, "grant-admin", "BOSS@example.com"))
    token = deployment.auth.login("boss@example.com")["data"]["session"]["access_token"]
    assert deployment.client.get("/api/v1/admin/users", headers=bearer(token)).status_code == 200

    listed = json.loads(ok(users(deployment, "list", "--json")))
    assert [u["email"] for u in listed["users"]] == ["ann@example.com", "boss@example.com"]
    assert listed["users"][1]["roles"] == ["admin"] and listed["next_cursor"] is None
    page = ok(users(deployment, "list", "--limit", "1"))
    assert page.splitlines()[0].endswith("ann@example.com")
    cursor = page.splitlines()[-1].removeprefix("more: authsvc users list --cursor ")
    rest = ok(users(deployment, "list", "--limit", "1", "--cursor", cursor))
    assert rest.splitlines() == [f"{boss_id}  boss@example.com  [admin]"]
    assert ok(users(deployment, "list", "--search", "nobody")) == "no users matching 'nobody'\n"

    shown = json.loads(ok(users(deployment, "show", boss_id, "--json")))
    assert shown["consistent"] is True and shown["identity"]["roles"] == ["admin"]
    human = ok(users(deployment, "show", "ann@example.com"))
    assert "username: ann" in human and "consistent: yes" in human

    assert "revoked admin" in ok(users(deployment, "revoke-admin", "boss@example.com"))
    assert deployment.client.get("/api/v1/admin/users", headers=bearer(token)).status_code == 403
    assert [e["actor"] for e in deployment.events("role_granted")] == ["cli"]
    assert len(deployment.events("role_revoked")) == 1


def test_an_anonymous_user_lists_and_shows(deployment):
    created = deployment.client.post("/api/v1/auth/anonymous", json={})
    user_id = created.get_json()["data"]["user"]["id"]
    assert ok(users(deployment, "list")).splitlines() == [f"{user_id}  -  [anonymous]"]
    shown = ok(users(deployment, "show", user_id))
    assert "  email: None" in shown and "consistent: yes" in shown


def test_an_operator_bans_unbans_revokes_and_deletes(deployment):
    user_id, token = deployment.signup("troll@example.com", username="troll")
    out = ok(users(deployment, "ban", "troll@example.com", "--duration", "2h"))
    assert out.startswith("banned:") and "[banned until" in out
    assert deployment.auth.me(token).get_json()["error"]["code"] == TokenRevoked.code
    assert deployment.auth.login("troll@example.com", expect=403)["error"]["code"] == (
        UserBanned.code
    )
    (banned,) = deployment.events("user_banned")
    assert banned["actor"] == "cli" and banned["details"]["duration_seconds"] == 7200
    ok(users(deployment, "unban", user_id))
    second = deployment.auth.login("troll@example.com")["data"]["session"]["access_token"]
    assert ok(users(deployment, "revoke", "troll@example.com")) == "ended 1 session(s)\n"
    assert deployment.auth.me(second).status_code == 401

    refused = users(deployment, "delete", "troll@example.com")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert deployment.identity(user_id) is not None
    assert ok(users(deployment, "delete", "troll@example.com", "--yes")) == f"deleted {user_id}\n"
    assert deployment.identity(user_id) is None and deployment.profile(user_id) is None
    (deleted,) = deployment.events("user_deleted")
    assert deleted["actor"] == "cli" and deleted["details"]["reason"] == "deleted_by_admin"


def test_an_operator_sees_a_ban_set_in_sql_to_infinity(deployment):
    user_id, _ = deployment.signup("forever@example.com")
    deployment.sql(
        deployment.identity_owner_url,
        "UPDATE auth.users SET banned_until = 'infinity' WHERE id = %s",
        (user_id,),
    )
    last = "9999-12-31T23:59:59.999999Z"
    shown = json.loads(ok(users(deployment, "show", user_id, "--json")))
    assert shown["identity"]["banned_until"] == shown["user"]["banned_until"] == last
    assert f"banned_until: {last}" in ok(users(deployment, "show", "forever@example.com"))
    assert f"[banned until {last}]" in ok(users(deployment, "list"))


@pytest.mark.parametrize(
    ("args", "status", "said"),
    [
        (("show", "nobody@example.com"), 1, "There is no user nobody@example.com"),
        (("ban", "nobody@example.com", "--duration", "1h"), 1, "There is no user"),
        (("ban", "someone@example.com", "--duration", "soon"), 2, "is not a duration"),
        (("delete", "8d0c5d46-5f3c-4e7b-9a51-0b8f6f1f2a10", "--yes"), 1, "There is no user"),
    ],
)
def test_mistakes_are_said_with_an_exit_status(deployment, args: Any, status, said):
    deployment.signup("someone@example.com")
    result = users(deployment, *args)
    assert result.returncode == status, (result.stdout, result.stderr)
    assert said in result.stderr
    assert deployment.events("user_banned") == [] and deployment.events("user_deleted") == []


def test_with_json_a_mistake_is_one_json_object_too(deployment):
    result = users(deployment, "show", "nobody@example.com", "--json")
    assert result.returncode == 1
    assert json.loads(result.stdout) == {"error": "There is no user nobody@example.com."}
    cursor = users(deployment, "list", "--cursor", "not-a-cursor", "--json")
    assert cursor.returncode == 2
    assert "cursor" in json.loads(cursor.stdout)["details"]


@pytest.mark.parametrize("limit", ["0", "101", "1000", "-5", "ten"])
def test_a_page_size_the_api_would_refuse_is_refused_not_clamped(limit, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "authsvc", "users", "list", "--limit", limit],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 2
    assert "from 1 to 100" in result.stderr and "Traceback" not in result.stderr
