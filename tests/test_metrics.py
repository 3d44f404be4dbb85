"""GET /metrics: counts at the HTTP edge in one process, and summed over gunicorn's workers."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from authsvc import create_app
from authsvc.config import ConfigError, load_settings
from authsvc.errors import (
    BadRequest,
    EmailTaken,
    InvalidCredentials,
    NotFound,
    SignupFailed,
    ValidationFailed,
)
from tests import faults
from tests.conftest import (
    CHEAP_ARGON2,
    PASSWORD,
    TEST_SECRET,
    AuthActions,
    app_overrides,
    identity_row,
)
from tests.service import Gunicorn, request
from tests.test_pages import Pages

SIGNUP = "/api/v1/auth/signup"


class Scrape:
    """One /metrics answer, parsed by prometheus_client's own parser."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples = [
            (sample.name, sample.labels, sample.value)
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        ]

    def values(self, name: str, **labels: str) -> list[float]:
        """Every sample of `name` whose labels include `labels`."""
        return [
            v
            for n, have, v in self.samples
            if n == name and all(have.get(k) == w for k, w in labels.items())
        ]

    def value(self, name: str, **labels: str) -> float:
        """The sum of those samples; 0 when there are none (a counter never moved)."""
        return sum(self.values(name, **labels))

    def labels(self, name: str, label: str) -> set[str]:
        return {have[label] for n, have, _ in self.samples if n == name and label in have}


def scrape(client: Any) -> Scrape:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.mimetype == "text/plain"
    return Scrape(response.text)


def moved(before: Scrape, after: Scrape, name: str, **labels: str) -> float:
    return after.value(name, **labels) - before.value(name, **labels)


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def metrics_app(database_url: str, tmp_path: Path, **extra: str):
    return create_app(
        app_overrides(
            database_url, tmp_path, AUTHSVC_METRICS="on", PROMETHEUS_MULTIPROC_DIR="", **extra
        )
    )


@pytest.fixture
def app(database_url, tmp_path):
    app = metrics_app(database_url, tmp_path)
    yield app
    app.extensions["authsvc"].stores.close()


@pytest.fixture
def client(app):
    return app.test_client()


# -- switched on, and what /metrics is -----------------------------------------------------------


def test_metrics_are_off_unless_switched_on(database_url, tmp_path):
    app = create_app(app_overrides(database_url, tmp_path))
    try:
        response = app.test_client().get("/metrics")
    finally:
        app.extensions["authsvc"].stores.close()
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == NotFound.code


def test_metrics_are_prometheus_text_and_not_part_of_the_api_document(client):
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert "# TYPE authsvc_http_requests_total counter" in response.text
    assert "# TYPE authsvc_http_request_duration_seconds histogram" in response.text
    openapi = client.get("/api/v1/openapi.json").get_json()
    assert not [path for path in openapi["paths"] if "metrics" in path]


@pytest.mark.parametrize("value", ["maybe", "2"])
def test_a_bad_switch_stops_the_start_naming_the_variable(value):
    with pytest.raises(ConfigError, match="AUTHSVC_METRICS"):
        load_settings({"AUTHSVC_METRICS": value, "JWT_SECRET_KEY": TEST_SECRET})


def test_a_multiprocess_directory_that_cannot_be_used_stops_the_start(tmp_path):
    missing = tmp_path / "absent"
    env = {
        "AUTHSVC_METRICS": "on",
        "PROMETHEUS_MULTIPROC_DIR": str(missing),
        "JWT_SECRET_KEY": TEST_SECRET,
    }
    with pytest.raises(ConfigError, match="PROMETHEUS_MULTIPROC_DIR"):
        load_settings(env)
    missing.mkdir()
    assert load_settings(env).metrics_dir == missing
    # Without metrics the variable is not ours to judge.
    assert load_settings({**env, "AUTHSVC_METRICS": "off"}).metrics_dir is None


# -- requests, latency, signups --------------------------------------------------------------------


def test_a_signup_moves_requests_latency_and_the_created_count(client):
    before = scrape(client)
    AuthActions(client).signup("counted@example.com")
    after = scrape(client)
    route = {"route": SIGNUP, "method": "POST"}
    assert moved(before, after, "authsvc_http_requests_total", status="201", **route) == 1
    assert moved(before, after, "authsvc_http_request_duration_seconds_count", **route) == 1
    assert moved(before, after, "authsvc_http_request_duration_seconds_sum", **route) > 0
    assert moved(before, after, "authsvc_signups_total", outcome="created") == 1
    assert after.value("authsvc_signup_failures_total") == 0
    assert after.value("authsvc_signup_compensations_total") == 0
    # The scrape before this one is counted under its own route.
    assert after.value("authsvc_http_requests_total", route="/metrics", status="200") >= 1


def test_refused_signups_count_under_their_error_code(client):
    auth = AuthActions(client)
    auth.signup("taken@example.com")
    before = scrape(client)
    auth.signup("taken@example.com", expect=409)
    auth.signup("not-an-email", expect=422)
    after = scrape(client)
    assert moved(before, after, "authsvc_signups_total", outcome=EmailTaken.code) == 1
    assert moved(before, after, "authsvc_signups_total", outcome=ValidationFailed.code) == 1
    assert moved(before, after, "authsvc_signups_total", outcome="created") == 0
    assert moved(before, after, "authsvc_http_requests_total", route=SIGNUP, status="409") == 1


def test_a_failed_signup_counts_its_step_and_its_compensation(client, owner_url):
    before = scrape(client)
    with faults.profile_insert_raises(owner_url):
        body = AuthActions(client).signup("victim@example.com", expect=500)
    assert body["error"]["code"] == SignupFailed.code
    after = scrape(client)
    assert moved(before, after, "authsvc_signups_total", outcome=SignupFailed.code) == 1
    assert (
        moved(
            before,
            after,
            "authsvc_signup_failures_total",
            step="profile_insert",
            compensated="true",
        )
        == 1
    )
    assert moved(before, after, "authsvc_signup_compensations_total") == 1
    assert moved(before, after, "authsvc_signup_uncompensated_total") == 0
    assert moved(before, after, "authsvc_http_requests_total", route=SIGNUP, status="500") == 1


def test_a_signup_that_could_not_be_undone_is_counted_for_reconcile(
    split_urls, split_owner_urls, tmp_path
):
    """Two databases: the profile is refused and the identity's delete too, so a pending
    identity remains; that is the count an operator watches to run `authsvc reconcile`."""
    app_url, auth_url = split_urls
    app = metrics_app(app_url, tmp_path, AUTH_DATABASE_URL=auth_url)
    client = app.test_client()
    try:
        before = scrape(client)
        with (
            faults.profile_insert_raises(split_owner_urls[0]),
            faults.trigger(
                split_owner_urls[1],
                "auth.users",
                "RAISE EXCEPTION 'no delete';",
                when="BEFORE DELETE",
                name="authsvc_fault_del_identity",
            ),
        ):
            body = AuthActions(client).signup("stuck@example.com", expect=500)
        after = scrape(client)
    finally:
        app.extensions["authsvc"].stores.close()
    assert body["error"]["details"]["compensated"] is False
    assert (
        moved(
            before,
            after,
            "authsvc_signup_failures_total",
            step="profile_insert",
            compensated="false",
        )
        == 1
    )
    assert moved(before, after, "authsvc_signup_uncompensated_total") == 1
    assert moved(before, after, "authsvc_signup_compensations_total") == 0
    with psycopg.connect(auth_url) as conn:
        state = conn.execute(
            "SELECT signup_state FROM auth.users WHERE email = %s", ("stuck@example.com",)
        ).fetchone()
    assert state == ("pending",)


def test_unknown_paths_share_one_route_label(client):
    before = scrape(client)
    for path in ("/no/such/page", "/api/v1/auth/nothing-here", "/x" * 20):
        assert client.get(path).status_code == 404
    after = scrape(client)
    assert (
        moved(
            before,
            after,
            "authsvc_http_requests_total",
            route="unmatched",
            method="GET",
            status="404",
        )
        == 3
    )
    routes = after.labels("authsvc_http_requests_total", "route")
    assert not [r for r in routes if "no/such" in r or "nothing-here" in r or "/x/x" in r]


def test_odd_methods_share_one_method_label(client):
    before = scrape(client)
    assert client.open("/healthz", method="BREW").status_code == 405
    after = scrape(client)
    assert (
        moved(
            before,
            after,
            "authsvc_http_requests_total",
            route="unmatched",
            method="OTHER",
            status="405",
        )
        == 1
    )
    assert "BREW" not in after.labels("authsvc_http_requests_total", "method")


# -- the hosted pages ------------------------------------------------------------------------------


def test_signups_on_the_hosted_form_are_counted_like_the_api(app, client, db, owner_url):
    before = scrape(client)
    assert Pages(app.test_client()).signup("page@example.com").status_code == 303
    with faults.profile_insert_raises(owner_url):
        assert Pages(app.test_client()).signup("page-victim@example.com").status_code == 500
    refused = client.post("/signup", data={"email": "nocsrf@example.com", "password": PASSWORD})
    assert refused.status_code == 400
    after = scrape(client)
    assert identity_row(db, "page@example.com")["signup_state"] == "complete"
    assert moved(before, after, "authsvc_signups_total", outcome="created") == 1
    assert moved(before, after, "authsvc_signups_total", outcome=SignupFailed.code) == 1
    assert (
        moved(
            before,
            after,
            "authsvc_signup_failures_total",
            step="profile_insert",
            compensated="true",
        )
        == 1
    )
    # Refused before any signup code ran: counted by status, not as an error code.
    assert moved(before, after, "authsvc_signups_total", outcome="HTTP_400") == 1
    assert moved(before, after, "authsvc_signups_total", outcome=BadRequest.code) == 0
    # Showing the form is not a signup.
    assert (
        moved(
            before,
            after,
            "authsvc_http_requests_total",
            route="/signup",
            method="GET",
            status="200",
        )
        == 2
    )
    assert moved(before, after, "authsvc_signups_total") == 3


# -- connection pools ------------------------------------------------------------------------------


def test_pool_gauges_show_a_request_waiting_for_the_only_connection(
    database_url, owner_url, tmp_path
):
    """Pool of one: a signup holds the connection (a trigger sleeps in its transaction) while a
    login waits for it; /metrics needs no connection and shows both."""
    app = metrics_app(
        database_url, tmp_path, AUTHSVC_DB_POOL_SIZE="1", AUTHSVC_DB_POOL_TIMEOUT="10"
    )
    client = app.test_client()
    results: dict[str, int] = {}

    def call(name: str, path: str, email: str) -> None:
        response = app.test_client().post(path, json={"email": email, "password": PASSWORD})
        results[name] = response.status_code

    def pool(scraped: Scrape, gauge: str) -> float:
        values = scraped.values(f"authsvc_db_pool_{gauge}", database="database")
        assert len(values) == 1, scraped.text
        return values[0]

    def waiting(scraped: Scrape) -> Scrape | None:
        return scraped if pool(scraped, "requests_waiting") == 1 else None

    try:
        assert client.get("/readyz").status_code == 200  # opens the pool
        idle = scrape(client)
        assert pool(idle, "max") == 1 and pool(idle, "size") == 1
        assert pool(idle, "available") == 1 and pool(idle, "requests_waiting") == 0
        with faults.profile_insert_sleeps(owner_url, 1.5):
            holder = threading.Thread(target=call, args=("signup", SIGNUP, "slow@example.com"))
            holder.start()
            wait_for(lambda: pool(scrape(client), "available") == 0, 5, "the signup's connection")
            waiter = threading.Thread(
                target=call, args=("login", "/api/v1/auth/login", "nobody@example.com")
            )
            waiter.start()
            busy = wait_for(lambda: waiting(scrape(client)), 5, "the login to wait")
            holder.join(10)
            waiter.join(10)
        assert pool(busy, "available") == 0 and pool(busy, "size") == 1
        assert results == {"signup": 201, "login": InvalidCredentials.status}
        assert pool(scrape(client), "requests_waiting") == 0
    finally:
        app.extensions["authsvc"].stores.close()


def test_split_deployments_show_each_database_pool(split_urls, tmp_path):
    app_url, auth_url = split_urls
    app = metrics_app(app_url, tmp_path, AUTH_DATABASE_URL=auth_url)
    client = app.test_client()
    try:
        assert client.get("/readyz").status_code == 200
        scraped = scrape(client)
    finally:
        app.extensions["authsvc"].stores.close()
    assert scraped.labels("authsvc_db_pool_size", "database") == {"database", "auth_database"}


# -- under gunicorn, two workers -----------------------------------------------------------------


def gunicorn_env(database_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "JWT_SECRET_KEY": TEST_SECRET,
        "AUTHSVC_DATA_DIR": str(tmp_path),
        "AUTHSVC_RATE_LIMITS": "off",
        "AUTHSVC_METRICS": "on",
        "AUTHSVC_ENV": "development",
        **CHEAP_ARGON2,
        **extra,
    }


def served(server: Gunicorn) -> Scrape:
    with urllib.request.urlopen(server.base + "/metrics", timeout=15) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        return Scrape(response.read().decode())


def per_worker(
    directory: Path, name: str, kind: str = "counter", **labels: str
) -> dict[int, float]:
    """`name` as each worker wrote it in its own file (one file at a time, read by
    prometheus_client's collector); `kind` is the file's prefix."""
    found = {}
    for path in directory.glob(f"{kind}_*.db"):
        with tempfile.TemporaryDirectory() as alone:
            shutil.copy(path, alone)
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=alone)
            pid = int(path.stem.rsplit("_", 1)[1])
            if kind.startswith("gauge_live"):
                labels = {**labels, "pid": str(pid)}
            found[pid] = registry.get_sample_value(name, labels) or 0.0
    return found


HEALTHZ = {"route": "/healthz", "method": "GET", "status": "200"}


def healthz_on_both_workers(server: Gunicorn, directory: Path) -> int:
    """Send /healthz until each worker has answered some (the kernel picks which worker
    accepts); returns how many were sent."""
    workers = server.worker_pids()
    assert len(workers) == 2
    sent = 0
    for _ in range(20):
        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(
                pool.map(lambda _: request(server.base, "GET", "/healthz")[0], range(24))
            )
        assert statuses == [200] * 24
        sent += 24
        counts = per_worker(directory, "authsvc_http_requests_total", **HEALTHZ)
        if all(counts.get(pid, 0) > 0 for pid in workers):
            return sent
    raise AssertionError(f"one worker answered every request: {counts}")


def pool_pids(server: Gunicorn) -> set[str]:
    return served(server).labels("authsvc_db_pool_size", "pid")


def test_requests_spread_over_both_workers_are_summed(database_url, tmp_path):
    directory = tmp_path / "prometheus"
    server = Gunicorn(gunicorn_env(database_url, tmp_path, PROMETHEUS_MULTIPROC_DIR=str(directory)))
    try:
        server.wait_ready()
        workers = server.worker_pids()
        # Before any scrape, each worker has written its own pool's numbers.
        wait_for(
            lambda: all(
                per_worker(
                    directory, "authsvc_db_pool_size", "gauge_liveall", database="database"
                ).get(pid, 0)
                >= 1
                for pid in workers
            ),
            15,
            "each worker's pool gauges",
        )
        sent = healthz_on_both_workers(server, directory)
        for i in range(3):
            status, body, _ = request(
                server.base, "POST", SIGNUP, {"email": f"w{i}@example.com", "password": PASSWORD}
            )
            assert status == 201, body
        scraped = served(server)
        assert scraped.value("authsvc_http_requests_total", **HEALTHZ) == sent
        assert scraped.value("authsvc_signups_total", outcome="created") == 3
        # Each worker's own pool: one series per live worker.
        assert pool_pids(server) == {str(pid) for pid in workers}
    finally:
        server.stop()


def test_a_killed_worker_does_not_break_metrics(database_url, tmp_path):
    server = Gunicorn(gunicorn_env(database_url, tmp_path))
    made = Path(tempfile.gettempdir())
    try:
        server.wait_ready()
        # No PROMETHEUS_MULTIPROC_DIR given: the master made one of its own.
        (directory,) = made.glob(f"authsvc-metrics-{server.proc.pid}-*")
        sent = healthz_on_both_workers(server, directory)
        workers = {str(pid) for pid in server.worker_pids()}
        wait_for(lambda: pool_pids(server) == workers, 15, "both workers' pool gauges")
        victim = server.worker_pids()[0]
        os.kill(victim, signal.SIGKILL)
        wait_for(
            lambda: victim not in (p := server.worker_pids()) and len(p) == 2,
            30,
            "gunicorn to replace the killed worker",
        )
        # Whichever worker answers, the dead one's requests stay in the sums and its pool goes.
        for _ in range(6):
            after = served(server)
            assert after.value("authsvc_http_requests_total", **HEALTHZ) == sent
            assert str(victim) not in after.labels("authsvc_db_pool_size", "pid")
        live = {str(pid) for pid in server.worker_pids()}
        wait_for(lambda: pool_pids(server) == live, 15, "the new worker's pool gauges")
    finally:
        server.stop()
    assert not directory.exists()
