"""DELETE /api/v1/auth/me: a user closes their account, whole or gone, in one database and split.

Faults are real: triggers that refuse a delete, and a database whose reply is lost on the wire
before it goes out of reach (tests/lossy_proxy.py). What a failure halfway leaves is finished by
the real `authsvc reconcile --repair`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from psycopg.conninfo import conninfo_to_dict

from authsvc import create_app
from authsvc.errors import (
    DatabaseUnavailable,
    DeletionFailed,
    InvalidCredentials,
    RateLimited,
    ReauthenticationRequired,
    TokenRevoked,
    ValidationFailed,
)
from tests import faults
from tests.admin_support import Deployment, bearer
from tests.conftest import PASSWORD, TEST_SECRET, AuthActions, app_overrides
from tests.lossy_proxy import LossyProxy

ME = "/api/v1/auth/me"


def close(deployment: Deployment, token: str, body: dict[str, Any] | None = None):
    return deployment.client.delete(ME, json=body, headers=bearer(token))


def code(response) -> str:
    return response.get_json()["error"]["code"]


def reconcile_repair(urls: tuple[str, str], tmp_path: Any) -> subprocess.CompletedProcess:
    """`authsvc reconcile --repair --json`, as an operator runs it, with no grace period."""
    app_url, auth_url = urls
    command = shutil.which("authsvc")
    argv = [command] if command else [sys.executable, "-m", "authsvc.cli"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTHSVC_", "DATABASE_URL"))}
    env.update(
        DATABASE_URL=app_url,
        AUTH_DATABASE_URL=auth_url,
        JWT_SECRET_KEY=TEST_SECRET,
        AUTHSVC_DATA_DIR=str(tmp_path / "cli"),
        AUTHSVC_RECONCILE_GRACE_SECONDS="0",
    )
    return subprocess.run(
        [*argv, "reconcile", "--repair", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_closing_with_the_password_removes_both_rows_and_every_session(deployment):
    user_id, token = deployment.signup("leaving@example.com", username="leaving")
    other = deployment.auth.login("leaving@example.com")["data"]["session"]
    answer = close(deployment, token, {"password": PASSWORD})
    assert answer.status_code == 200 and answer.get_json() == {"success": True, "data": {}}
    assert deployment.identity(user_id) is None and deployment.profile(user_id) is None
    assert code(deployment.auth.me(token)) == TokenRevoked.code
    assert code(deployment.auth.me(other["access_token"])) == TokenRevoked.code
    refreshed = deployment.client.post(
        "/api/v1/auth/refresh", json={"refresh_token": other["refresh_token"]}
    )
    assert refreshed.status_code == 401
    assert deployment.auth.login("leaving@example.com", expect=401)["error"]["code"] == (
        InvalidCredentials.code
    )
    # The email and the username are free again.
    deployment.signup("leaving@example.com", username="leaving")
    (event,) = deployment.events("user_deleted")
    assert str(event["user_id"]) == user_id and event["actor"] == "user"
    assert event["details"] == {
        "reason": "account_deleted",
        "sessions_revoked": 2,
        "profile_removed": True,
    }


def test_a_wrong_password_closes_nothing(deployment):
    user_id, token = deployment.signup("staying@example.com")
    answer = close(deployment, token, {"password": "not the password at all"})
    assert answer.status_code == 401 and code(answer) == InvalidCredentials.code
    assert deployment.identity(user_id) and deployment.profile(user_id)
    assert deployment.auth.me(token).status_code == 200
    (failed,) = deployment.events("login_failed")
    assert str(failed["user_id"]) == user_id
    assert failed["details"] == {"during": "close_account"}


def test_without_a_password_only_a_fresh_login_may_close_the_account(deployment):
    user_id, token = deployment.signup("fresh@example.com")
    deployment.sql(
        deployment.identity_owner_url,
        "UPDATE authsvc.sessions SET created_at = now() - interval '1 hour' WHERE user_id = %s",
        (user_id,),
    )
    stale = close(deployment, token)
    assert stale.status_code == 401 and code(stale) == ReauthenticationRequired.code
    assert deployment.identity(user_id) is not None
    fresh = deployment.auth.login("fresh@example.com")["data"]["session"]["access_token"]
    assert close(deployment, fresh).status_code == 200
    assert deployment.identity(user_id) is None and deployment.profile(user_id) is None


def test_a_password_given_to_close_the_account_spends_the_login_budget_of_that_account(
    deployment,
):
    """docs/api.md: a password given here counts against the login limits, per address and
    per account. Guesses at login from one address and here from another share the account's
    budget."""
    app = deployment.build(AUTHSVC_RATE_LIMITS="on", AUTHSVC_RATE_LIMIT_LOGIN="2 per minute")
    client = app.test_client()
    signed_up = client.post(
        "/api/v1/auth/signup", json={"email": "guessed@example.com", "password": PASSWORD}
    ).get_json()["data"]
    for n in range(2):
        guess = client.post(
            "/api/v1/auth/login",
            json={"email": "guessed@example.com", "password": f"wrong guess {n}"},
            environ_base={"REMOTE_ADDR": "10.0.21.1"},
        )
        assert guess.status_code == 401
    answer = client.delete(
        ME,
        json={"password": "wrong guess 2"},
        headers=bearer(signed_up["session"]["access_token"]),
        environ_base={"REMOTE_ADDR": "10.0.21.2"},
    )
    assert answer.status_code == 429 and code(answer) == RateLimited.code


def test_a_login_the_closing_lands_under_is_refused_as_for_no_account(deployment):
    """The account's deletion commits while a login is between checking the password and
    starting its session (a DELETE /me racing a login): the login answers as for an account
    that does not exist, never a 500, and no session is left."""
    user_id, _ = deployment.signup("racing@example.com")
    # The closing's transaction: the identity deleted, not yet committed. The login still
    # reads the account and its password, then waits for this row's lock.
    response = faults.racing(
        deployment.identity_owner_url,
        lambda closing: closing.execute("DELETE FROM auth.users WHERE id = %s", (user_id,)),
        lambda: deployment.client.post(
            "/api/v1/auth/login", json={"email": "racing@example.com", "password": PASSWORD}
        ),
        "login",
    )
    assert response.status_code == 401, response.get_json()
    assert code(response) == InvalidCredentials.code
    assert not deployment.sql(
        deployment.identity_owner_url,
        "SELECT 1 FROM authsvc.sessions WHERE user_id = %s",
        (user_id,),
    )


@pytest.mark.parametrize(
    "body",
    [{"password": ""}, {"password": None}, {"password": 12}, {"pasword": PASSWORD}],
)
def test_a_bad_body_is_a_422_and_closes_nothing(deployment, body):
    user_id, token = deployment.signup("kept@example.com")
    answer = close(deployment, token, body)
    assert answer.status_code == 422 and code(answer) == ValidationFailed.code
    assert deployment.identity(user_id) is not None


def test_a_malformed_body_is_a_400_and_no_token_a_401(deployment):
    _, token = deployment.signup("kept@example.com")
    malformed = deployment.client.delete(
        ME, data="{", headers={**bearer(token), "Content-Type": "application/json"}
    )
    assert malformed.status_code == 400
    assert deployment.client.delete(ME, json={"password": PASSWORD}).status_code == 401


# -- failures halfway -------------------------------------------------------------------------


def test_when_the_identity_cannot_go_nothing_goes(deployment):
    user_id, token = deployment.signup("stuck@example.com", username="stuck")
    with faults.trigger(
        deployment.identity_owner_url,
        "auth.users",
        "RAISE EXCEPTION 'identity delete refused';",
        when="BEFORE DELETE",
    ):
        answer = close(deployment, token, {"password": PASSWORD})
    assert answer.status_code == 500 and code(answer) == DeletionFailed.code
    details = answer.get_json()["error"]["details"]
    assert details == {
        "step": "identity_delete",
        "reason": "trigger_raised",
        "removed": False,
        "hint": "a trigger on the table raised an error",
    }
    assert deployment.identity(user_id) and deployment.profile(user_id)
    # Its sessions ended first; logging in again and retrying works.
    assert code(deployment.auth.me(token)) == TokenRevoked.code
    again = deployment.auth.login("stuck@example.com")["data"]["session"]["access_token"]
    assert close(deployment, again, {"password": PASSWORD}).status_code == 200
    assert deployment.identity(user_id) is None and deployment.profile(user_id) is None


def test_one_database_a_refused_profile_delete_rolls_the_whole_removal_back(deployment):
    if deployment.layout != "one_database":
        pytest.skip("one transaction only in one database; split is tested below")
    user_id, token = deployment.signup("stuck@example.com")
    with faults.trigger(
        deployment.profile_owner_url,
        "public.users",
        "RAISE EXCEPTION 'profile delete refused';",
        when="BEFORE DELETE",
    ):
        answer = close(deployment, token, {"password": PASSWORD})
    assert code(answer) == DeletionFailed.code
    assert answer.get_json()["error"]["details"]["step"] == "profile_delete"
    assert deployment.identity(user_id) and deployment.profile(user_id)


def test_split_a_refused_profile_delete_leaves_what_reconcile_removes(deployment, tmp_path):
    if deployment.layout != "split":
        pytest.skip("across two databases only")
    user_id, token = deployment.signup("halfway@example.com", username="halfway")
    with faults.trigger(
        deployment.profile_owner_url,
        "public.users",
        "RAISE EXCEPTION 'profile delete refused';",
        when="BEFORE DELETE",
    ):
        answer = close(deployment, token, {"password": PASSWORD})
    # The identity went first: the account is closed, only its profile is left behind.
    assert answer.status_code == 200
    assert deployment.identity(user_id) is None and deployment.profile(user_id) is not None
    assert deployment.auth.login("halfway@example.com", expect=401)["error"]["code"] == (
        InvalidCredentials.code
    )
    (event,) = deployment.events("user_deleted")
    assert event["details"]["profile_removed"] is False
    repaired = reconcile_repair(deployment.service_urls, tmp_path)
    assert repaired.returncode == 0, repaired.stderr
    report = json.loads(repaired.stdout)
    assert report["profiles_without_identity"]["ids"] == [user_id]
    assert report["repaired"]["profiles_removed"] == 1
    assert deployment.profile(user_id) is None
    deployment.signup("halfway@example.com", username="halfway")  # nothing holds them


# -- the database goes away mid-removal (a lost reply, then no database) ------------------------


def _proxy_for(url: str) -> LossyProxy:
    params = conninfo_to_dict(url)
    return LossyProxy(params.get("host") or "127.0.0.1", int(params.get("port") or 5432))


@pytest.fixture
def behind_proxy(deployment: Deployment, tmp_path: Any) -> Iterator[tuple[AuthActions, LossyProxy]]:
    """The same deployment, its identity database reached through a lossy proxy."""
    app_url, auth_url = deployment.service_urls
    proxy = _proxy_for(auth_url)
    if deployment.layout == "one_database":
        settings = app_overrides(proxy.url(app_url), tmp_path, AUTHSVC_DB_POOL_TIMEOUT="1")
    else:
        settings = app_overrides(
            app_url, tmp_path, AUTH_DATABASE_URL=proxy.url(auth_url), AUTHSVC_DB_POOL_TIMEOUT="1"
        )
    app = create_app(settings)
    yield AuthActions(app.test_client()), proxy
    app.extensions["authsvc"].stores.close()
    proxy.stop()


def test_a_lost_reply_of_the_removal_is_read_back_and_answered_200(deployment, behind_proxy):
    auth, proxy = behind_proxy
    body = auth.signup("lost@example.com")["data"]
    statement = "COMMIT" if deployment.layout == "one_database" else "DELETE FROM auth.users"
    proxy.lose_reply_of(statement)
    answer = auth.client.delete(
        ME, json={"password": PASSWORD}, headers=bearer(body["session"]["access_token"])
    )
    assert proxy.lost == [statement.encode()], ("no reply was lost", answer.get_json())
    assert answer.status_code == 200, answer.get_json()
    user_id = body["user"]["id"]
    assert deployment.identity(user_id) is None and deployment.profile(user_id) is None


def test_a_database_gone_after_the_identity_went_leaves_what_reconcile_removes(
    deployment, behind_proxy, tmp_path
):
    if deployment.layout != "split":
        pytest.skip("in one database the transaction is all or nothing (tested above)")
    auth, proxy = behind_proxy
    body = auth.signup("gone@example.com", username="gone_midway")["data"]
    user_id = body["user"]["id"]
    proxy.lose_reply_of("DELETE FROM auth.users")
    proxy.unreachable_after_loss = True  # nobody can look whether the delete landed
    try:
        answer = auth.client.delete(
            ME, json={"password": PASSWORD}, headers=bearer(body["session"]["access_token"])
        )
    finally:
        proxy.refusing = False
    assert answer.status_code == 503 and code(answer) == DatabaseUnavailable.code
    # The delete did land: the identity is gone, its profile remains, and nobody can log in.
    assert deployment.identity(user_id) is None and deployment.profile(user_id) is not None
    assert deployment.auth.login("gone@example.com", expect=401)
    repaired = reconcile_repair(deployment.service_urls, tmp_path)
    assert repaired.returncode == 0, repaired.stderr
    assert json.loads(repaired.stdout)["repaired"]["profiles_removed"] == 1
    assert deployment.profile(user_id) is None


def test_an_anonymous_account_closes_with_its_session_alone(deployment):
    user_id, token = deployment.signup("guest@example.com")
    # An anonymous identity (POST /api/v1/auth/anonymous) has no password to confirm with.
    deployment.sql(
        deployment.identity_owner_url,
        "UPDATE auth.users SET is_anonymous = true, password_hash = NULL WHERE id = %s",
        (user_id,),
    )
    deployment.sql(
        deployment.identity_owner_url,
        "UPDATE authsvc.sessions SET created_at = now() - interval '1 day' WHERE user_id = %s",
        (user_id,),
    )
    assert close(deployment, token).status_code == 200
    assert deployment.identity(user_id) is None and deployment.profile(user_id) is None
