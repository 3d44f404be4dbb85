"""The service under gunicorn with two workers, as the Procfile runs it."""

from __future__ import annotations

import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import PASSWORD, count
from tests.service import Gunicorn, request, service_env


@pytest.fixture
def server(database_url, tmp_path):
    service = Gunicorn.started(
        service_env(tmp_path, DATABASE_URL=database_url, AUTHSVC_ENV="production",
                    AUTHSVC_ARGON2_TIME_COST="2", AUTHSVC_ARGON2_MEMORY_KIB="19456"),
        log_path=tmp_path / "gunicorn.log",
    )
    yield service
    service.stop()


def test_two_workers_serve_signup_login_and_me(server, db):
    status, body, headers = request(server.base, "POST", "/api/v1/auth/signup",
                                    {"email": "gun@example.com", "password": PASSWORD})
    assert status == 201, body
    assert headers["X-Request-ID"]
    status, body, _ = request(server.base, "POST", "/api/v1/auth/login",
                              {"email": "gun@example.com", "password": PASSWORD})
    assert status == 200
    token = body["data"]["session"]["access_token"]
    # Tokens minted by one worker are honoured by the other: hit /me several times.
    for _ in range(6):
        status, me, _ = request(server.base, "GET", "/api/v1/auth/me",
                                headers={"Authorization": f"Bearer {token}"})
        assert status == 200 and me["data"]["user"]["email"] == "gun@example.com"
    assert len(server.worker_pids()) == 2


def test_duplicate_signups_across_workers_give_one_account(server, db):
    def attempt(_):
        return request(server.base, "POST", "/api/v1/auth/signup",
                       {"email": "race@example.com", "password": PASSWORD})[0]

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(attempt, range(8)))
    assert statuses.count(201) == 1 and statuses.count(409) == 7
    assert count(db, "auth.users") == 1 and count(db, "public.users") == 1


def test_a_killed_worker_is_replaced_and_service_continues(server):
    victim = server.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        pids = server.worker_pids()
        if victim not in pids and len(pids) == 2:
            break
        time.sleep(0.2)
    assert victim not in server.worker_pids()
    for i in range(4):
        status, body, _ = request(server.base, "POST", "/api/v1/auth/signup",
                                  {"email": f"after{i}@example.com", "password": PASSWORD})
        assert status == 201, body


def test_access_log_lines_are_json_with_the_request_id(server):
    _, _, headers = request(server.base, "GET", "/healthz", headers={"X-Request-ID": "trace-1"})
    assert headers["X-Request-ID"] == "trace-1"
    logs = server.stop()
    entries = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    assert any(e.get("request_id") == "trace-1" and e.get("status") == 200 for e in entries)
