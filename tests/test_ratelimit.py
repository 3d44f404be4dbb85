"""Rate limits per client address and per account, answered 429 in the envelope."""

from __future__ import annotations

import pytest

from authsvc import create_app
from authsvc.errors import RateLimited
from tests.conftest import PASSWORD, app_overrides


@pytest.fixture
def limited_app(database_url, tmp_path):
    app = create_app(app_overrides(database_url, tmp_path, AUTHSVC_RATE_LIMITS="on",
                                   AUTHSVC_RATE_LIMIT_LOGIN="3 per minute",
                                   AUTHSVC_RATE_LIMIT_SIGNUP="2 per minute"))
    yield app
    app.extensions["authsvc"].stores.close()


def login(app, email, addr):
    return app.test_client().post("/api/v1/auth/login",
                                  json={"email": email, "password": PASSWORD},
                                  environ_base={"REMOTE_ADDR": addr})


def test_login_over_the_limit_is_429_with_retry_after(limited_app):
    statuses = [login(limited_app, "a@example.com", "10.0.0.1").status_code for _ in range(3)]
    assert statuses == [401, 401, 401]
    response = login(limited_app, "a@example.com", "10.0.0.1")
    body = response.get_json()
    assert response.status_code == 429
    assert body["error"]["code"] == RateLimited.code
    retry = int(response.headers["Retry-After"])
    assert 1 <= retry <= 61 and body["error"]["details"]["retry_after"] == retry


def test_the_login_limit_also_holds_per_account_across_addresses(limited_app):
    for i in range(3):
        login(limited_app, "victim@example.com", f"10.0.1.{i}")
    assert login(limited_app, "VICTIM@example.com", "10.0.1.99").status_code == 429
    # Another account from a fresh address is unaffected.
    assert login(limited_app, "other@example.com", "10.0.2.1").status_code == 401


def test_signup_is_limited_per_address(limited_app, db):
    client = limited_app.test_client()

    def signup(i):
        return client.post("/api/v1/auth/signup",
                           json={"email": f"s{i}@example.com", "password": PASSWORD},
                           environ_base={"REMOTE_ADDR": "10.0.3.1"})

    assert [signup(i).status_code for i in range(2)] == [201, 201]
    assert signup(3).status_code == 429
    assert db.execute("SELECT count(*) AS n FROM auth.users").fetchone()["n"] == 2


def test_rate_limits_off_lets_everything_through(app):
    client = app.test_client()
    for _ in range(30):
        response = client.post("/api/v1/auth/login",
                               json={"email": "a@example.com", "password": PASSWORD})
        assert response.status_code == 401
