"""/healthz, /readyz and /version."""

from __future__ import annotations

import re
import socket
import time

from authsvc import __version__, create_app
from authsvc.errors import DatabaseUnavailable, NotReady
from tests import faults
from tests.conftest import PASSWORD, app_overrides, latest_migration

# API.md: 503 DATABASE_UNAVAILABLE "within a few seconds". With the default time-outs an answer
# takes about 3 s (the wait for a pooled connection); 5 s is still "a few" on a loaded machine.
UNAVAILABLE_WITHIN = 5.0


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"postgresql://authsvc:x@127.0.0.1:{port}/authsvc"


def test_healthz_answers_without_io(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"success": True, "data": {"status": "ok"}}


def test_readyz_reports_each_check(client):
    body = client.get("/readyz").get_json()
    assert body["data"]["checks"] == {"database": "ok", "migrations": "ok"}
    assert body["data"]["status"] == "ready"


def test_readyz_is_503_naming_pending_migrations(pg, tmp_path):
    url = pg.create_database("authsvc_test_fresh")  # never migrated
    app = create_app(app_overrides(url, tmp_path))
    try:
        response = app.test_client().get("/readyz")
        body = response.get_json()
        assert response.status_code == 503
        assert body["error"]["code"] == NotReady.code
        checks = body["error"]["details"]["checks"]
        assert checks["database"] == "ok"
        assert checks["migrations"].startswith("pending: 0001_identities")
    finally:
        app.extensions["authsvc"].stores.close()
        pg.drop_database(url)


def test_without_a_database_readyz_and_api_answer_503_within_a_few_seconds(tmp_path):
    overrides = app_overrides(closed_port_url(), tmp_path)
    # The defaults users get: 3 s to connect, 3 s to wait for a pooled connection.
    del overrides["AUTHSVC_DB_CONNECT_TIMEOUT"], overrides["AUTHSVC_DB_POOL_TIMEOUT"]
    app = create_app(overrides)
    client = app.test_client()

    def timed(call, *args, **kwargs):
        started = time.monotonic()
        response = call(*args, **kwargs)
        elapsed = time.monotonic() - started
        assert elapsed < UNAVAILABLE_WITHIN, f"{args[0]} answered after {elapsed:.1f} s"
        return response

    try:
        ready = timed(client.get, "/readyz")
        assert ready.status_code == 503
        checks = ready.get_json()["error"]["details"]["checks"]
        assert checks["database"] != "ok"
        response = timed(
            client.post,
            "/api/v1/auth/signup",
            json={"email": "a@example.com", "password": PASSWORD},
        )
        assert response.status_code == 503
        assert response.get_json()["error"]["code"] == DatabaseUnavailable.code
        assert response.headers["Retry-After"]
        login = timed(
            client.post, "/api/v1/auth/login", json={"email": "a@example.com", "password": PASSWORD}
        )
        assert login.status_code == 503
        assert login.get_json()["error"]["code"] == DatabaseUnavailable.code
        # Liveness does no I/O and stays green.
        assert client.get("/healthz").status_code == 200
    finally:
        app.extensions["authsvc"].stores.close()


def test_version_tells_what_code_is_running(client):
    data = client.get("/version").get_json()["data"]
    assert data["version"] == __version__
    assert data["backend"] == "postgres"
    assert data["schema_version"] == latest_migration("auth", "sessions", "app")
    assert re.fullmatch(r"[0-9a-f]{40}", data["git_sha"] or ""), data["git_sha"]
    assert data["started_at"].endswith("Z")


def test_version_git_sha_can_come_from_the_environment(database_url, tmp_path):
    app = create_app(app_overrides(database_url, tmp_path, GIT_SHA="abc123"))
    assert app.test_client().get("/version").get_json()["data"]["git_sha"] == "abc123"
    app.extensions["authsvc"].stores.close()


def test_the_service_recovers_when_its_connections_are_killed(auth, owner_url):
    auth.signup()
    assert faults.terminate_service_backends(owner_url) >= 1  # the pool's idle connections
    auth.login()
    assert auth.client.get("/readyz").status_code == 200
