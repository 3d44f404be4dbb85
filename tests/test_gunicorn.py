"""The service under gunicorn with two workers, as the Procfile runs it."""

from __future__ import annotations

import http.client
import json
import os
import signal
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from tests.conftest import PASSWORD, count
from tests.service import Gunicorn, request, service_env, wait_for


@pytest.fixture
def server(database_url, tmp_path):
    service = Gunicorn.in_production(database_url, tmp_path)
    yield service
    service.stop()


def test_two_workers_serve_signup_login_and_me(server, db):
    status, body, headers = request(
        server.base,
        "POST",
        "/api/v1/auth/signup",
        {"email": "gun@example.com", "password": PASSWORD},
    )
    assert status == 201, body
    assert headers["X-Request-ID"]
    status, body, _ = request(
        server.base,
        "POST",
        "/api/v1/auth/login",
        {"email": "gun@example.com", "password": PASSWORD},
    )
    assert status == 200
    token = body["data"]["session"]["access_token"]
    # Tokens minted by one worker are honoured by the other: hit /me several times.
    for _ in range(6):
        status, me, _ = request(
            server.base, "GET", "/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"}
        )
        assert status == 200 and me["data"]["user"]["email"] == "gun@example.com"
    assert len(server.worker_pids()) == 2


def test_duplicate_signups_across_workers_give_one_account(server, db):
    def attempt(_):
        return request(
            server.base,
            "POST",
            "/api/v1/auth/signup",
            {"email": "race@example.com", "password": PASSWORD},
        )[0]

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(attempt, range(8)))
    assert statuses.count(201) == 1 and statuses.count(409) == 7
    assert count(db, "auth.users") == 1 and count(db, "public.users") == 1


def test_a_killed_worker_is_replaced_and_the_new_one_serves(server, db):
    master = server.master
    before = server.worker_pids()
    assert len(before) == 2, before
    victim, survivor = before
    server.kill_worker(victim)

    def replaced() -> list[int] | None:
        pids = server.worker_pids()
        return pids if len(pids) == 2 and victim not in pids else None

    after = wait_for(replaced, 30, "gunicorn to start a worker in place of the killed one")
    (new,) = set(after) - set(before)
    assert survivor in after and server.master == master and server.running
    server.wait_ready()

    # The old worker is paused, so only the new one can accept: every signup below must be
    # answered, and each connection be held by the new worker.
    os.kill(survivor, signal.SIGSTOP)
    try:
        for i in range(3):
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)
            try:
                conn.request(
                    "POST",
                    "/api/v1/auth/signup",
                    body=json.dumps({"email": f"after{i}@example.com", "password": PASSWORD}),
                    headers={"Content-Type": "application/json"},
                )
                response = conn.getresponse()
                body = json.loads(response.read())
                assert response.status == 201, body
                assert server.worker_serving(conn.sock.getsockname()[1]) == new
            finally:
                conn.close()
    finally:
        os.kill(survivor, signal.SIGCONT)
    assert server.worker_pids() == sorted([survivor, new])
    assert count(db, "auth.users") == 3 and count(db, "public.users") == 3


def test_one_access_log_line_per_request_json_with_the_request_id(server):
    _, _, headers = request(server.base, "GET", "/healthz", headers={"X-Request-ID": "trace-1"})
    assert headers["X-Request-ID"] == "trace-1"
    logs = server.stop()
    entries = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    access = [e for e in entries if e.get("status") == 200 and e.get("path") == "/healthz"]
    assert [e["request_id"] for e in access] == ["trace-1"]
    # One line per request: gunicorn's own access line (no request id) is not written too.
    assert not [e for e in entries if e.get("logger") == "gunicorn.access"]


def _lock_waits(database_url: str) -> int:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'authsvc' "
            "AND wait_event_type = 'Lock' AND datname = current_database()"
        ).fetchone()[0]


def test_a_worker_whose_threads_are_all_busy_leaves_new_connections_to_the_other(
    database_url, tmp_path, db
):
    # Two workers of two threads each. Four connections open at once, each with a request
    # that blocks on a row the test holds: all four run at once only if each worker took two.
    # A worker that took a third would queue it behind its two busy threads while the other
    # worker's threads idled (gthread accepts whenever the shared socket is ready).
    env = service_env(tmp_path, DATABASE_URL=database_url, GUNICORN_THREADS="2")
    service = Gunicorn.started(env)
    try:
        body = {"email": "busy@example.com", "password": PASSWORD}
        assert request(service.base, "POST", "/api/v1/auth/signup", body)[0] == 201
        session = request(service.base, "POST", "/api/v1/auth/login", body)[1]["data"]
        token, user_id = session["session"]["access_token"], session["user"]["id"]
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        connections = []
        with psycopg.connect(database_url) as held:
            held.execute("SELECT 1 FROM public.users WHERE id = %s FOR UPDATE", (user_id,))
            for i in range(4):
                conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=30)
                conn.request(
                    "PATCH",
                    "/api/v1/auth/me",
                    body=json.dumps({"display_name": f"name {i}"}),
                    headers=headers,
                )
                connections.append(conn)
            wait_for(lambda: _lock_waits(database_url) >= 4, 10, "four requests at once")
        # The row is free again: every request finishes.
        assert [c.getresponse().status for c in connections] == [200] * 4
    finally:
        service.stop()
