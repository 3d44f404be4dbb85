"""Rate limits: one budget per limit, counted in the service's Postgres (or Redis with REDIS_URL)
whichever worker or instance a request lands on, keyed on the client's real address, 429 in the
envelope. Against a real Postgres and Debian's redis-server, both started by the tests."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest

from authsvc import create_app
from authsvc.config import ConfigError, load_settings
from authsvc.errors import DatabaseUnavailable, RateLimited
from authsvc.ratelimit import RateLimits
from authsvc.stores.pg.database import Database
from authsvc.stores.pg.ratelimits import PgRateLimits
from tests import faults
from tests.conftest import CHEAP_ARGON2, PASSWORD, TEST_SECRET, app_overrides
from tests.redisserver import RedisServer, redis_server_missing
from tests.service import Gunicorn, request

LOGIN = "/api/v1/auth/login"

# -- Debian's redis-server, on a free loopback port ------------------------------------------


def _redis_server() -> RedisServer:
    missing = redis_server_missing()
    if missing:
        pytest.skip(missing)
    return RedisServer()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = _redis_server()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    redis_server.flush()  # every test starts with no counters
    return redis_server.url


@pytest.fixture(params=["postgres", "redis"])
def counted_in(request: pytest.FixtureRequest) -> dict[str, str]:
    """The settings that choose each storage: the service's Postgres (default), or Redis."""
    if request.param == "redis":
        return {"REDIS_URL": request.getfixturevalue("redis_url")}
    return {}


# -- apps in this process ------------------------------------------------------------------


@pytest.fixture
def make_app(database_url, tmp_path):
    """Apps with rate limits on and extra settings, closed at the end."""
    made = []

    def make(**extra: Any):
        app = create_app(app_overrides(database_url, tmp_path, AUTHSVC_RATE_LIMITS="on", **extra))
        made.append(app)
        return app

    yield make
    for app in made:
        app.extensions["authsvc"].stores.close()


@pytest.fixture
def limited_app(make_app):
    return make_app(
        AUTHSVC_RATE_LIMIT_LOGIN="3 per minute", AUTHSVC_RATE_LIMIT_SIGNUP="2 per minute"
    )


def login(app, email, addr, headers=None):
    return app.test_client().post(
        LOGIN,
        json={"email": email, "password": PASSWORD},
        environ_base={"REMOTE_ADDR": addr},
        headers=headers or {},
    )


def test_login_over_the_limit_is_429_with_retry_after(limited_app):
    statuses = [login(limited_app, "a@example.com", "10.0.0.1").status_code for _ in range(3)]
    assert statuses == [401, 401, 401]
    response = login(limited_app, "a@example.com", "10.0.0.1")
    body = response.get_json()
    assert response.status_code == 429
    assert body["error"]["code"] == RateLimited.code
    retry = int(response.headers["Retry-After"])
    assert 1 <= retry <= 61 and body["error"]["details"]["retry_after"] == retry
    assert body["error"]["details"]["limit"] == "3 per 1 minute"


def test_the_login_limit_also_holds_per_account_across_addresses(limited_app):
    for i in range(3):
        login(limited_app, "victim@example.com", f"10.0.1.{i}")
    assert login(limited_app, "VICTIM@example.com", "10.0.1.99").status_code == 429
    # Another account from a fresh address is unaffected.
    assert login(limited_app, "other@example.com", "10.0.2.1").status_code == 401


def test_signup_is_limited_per_address(limited_app, db):
    client = limited_app.test_client()

    def signup(i):
        return client.post(
            "/api/v1/auth/signup",
            json={"email": f"s{i}@example.com", "password": PASSWORD},
            environ_base={"REMOTE_ADDR": "10.0.3.1"},
        )

    assert [signup(i).status_code for i in range(2)] == [201, 201]
    assert signup(3).status_code == 429
    assert db.execute("SELECT count(*) AS n FROM auth.users").fetchone()["n"] == 2


def test_rate_limits_off_lets_everything_through(app):
    client = app.test_client()
    for _ in range(30):
        response = client.post(LOGIN, json={"email": "a@example.com", "password": PASSWORD})
        assert response.status_code == 401


def test_refresh_is_limited_per_address(make_app):
    app = make_app(AUTHSVC_RATE_LIMIT_REFRESH="2 per hour")
    client = app.test_client()
    here = {"REMOTE_ADDR": "10.0.4.1"}
    signed_up = client.post(
        "/api/v1/auth/signup",
        environ_base=here,
        json={"email": "r@example.com", "password": PASSWORD},
    ).get_json()
    token = signed_up["data"]["session"]["refresh_token"]
    for _ in range(2):
        response = client.post(
            "/api/v1/auth/refresh", json={"refresh_token": token}, environ_base=here
        )
        assert response.status_code == 200, response.get_json()
        token = response.get_json()["data"]["session"]["refresh_token"]
    refused = client.post("/api/v1/auth/refresh", json={"refresh_token": token}, environ_base=here)
    assert refused.status_code == 429
    assert refused.get_json()["error"]["code"] == RateLimited.code
    assert int(refused.headers["Retry-After"]) >= 1
    # The refused call did not spend the token: from another address it still works.
    elsewhere = client.post(
        "/api/v1/auth/refresh",
        json={"refresh_token": token},
        environ_base={"REMOTE_ADDR": "10.0.4.2"},
    )
    assert elsewhere.status_code == 200


def test_the_counters_live_in_the_services_postgres(limited_app, db):
    login(limited_app, "rows@example.com", "10.0.5.1")
    keys = {r["key"] for r in db.execute("SELECT key FROM authsvc.rate_limits").fetchall()}
    assert keys == {
        "LIMITER/login/10.0.5.1/3/1/minute",
        "LIMITER/login/account:rows@example.com/3/1/minute",
    }
    relpersistence = db.execute(
        "SELECT relpersistence FROM pg_class WHERE oid = 'authsvc.rate_limits'::regclass"
    ).fetchone()["relpersistence"]
    assert relpersistence == "u"  # UNLOGGED


def test_a_refused_request_spends_no_budget(make_app):
    # Postgres checks every counter of a request in one statement, all or nothing.
    app = make_app(AUTHSVC_RATE_LIMIT_LOGIN="2 per hour")
    assert login(app, "victim@example.com", "10.0.6.1").status_code == 401
    assert login(app, "victim@example.com", "10.0.6.2").status_code == 401
    # The account is spent: these are refused, and must not use up 10.0.6.3's own budget.
    refused = [login(app, "victim@example.com", "10.0.6.3").status_code for _ in range(3)]
    assert refused == [429] * 3
    own = [login(app, f"own{i}@example.com", "10.0.6.3").status_code for i in range(2)]
    assert own == [401] * 2
    assert login(app, "own9@example.com", "10.0.6.3").status_code == 429


def test_the_previous_window_weighs_by_its_overlap(make_app, db):
    # A sliding window counter: 4 per hour spent, then (on the database's clock) 90 minutes
    # less one pass. The spent window now overlaps the last hour by a little over half: half of
    # its hits still count, so 2 more get through, not 4.
    app = make_app(AUTHSVC_RATE_LIMIT_LOGIN="4 per hour")
    assert [login(app, "slide@example.com", "10.0.7.1").status_code for _ in range(5)] == (
        [401] * 4 + [429]
    )
    db.execute(
        "UPDATE authsvc.rate_limits SET window_start = window_start "
        "- interval '90 minutes' + interval '1 minute', "
        "expires_at = expires_at - interval '90 minutes' + interval '1 minute'"
    )
    assert [login(app, "slide@example.com", "10.0.7.1").status_code for _ in range(3)] == (
        [401] * 2 + [429]
    )
    # Two whole windows later nothing counts any more.
    db.execute(
        "UPDATE authsvc.rate_limits SET window_start = window_start - interval '2 hours', "
        "expires_at = expires_at - interval '2 hours'"
    )
    assert [login(app, "slide@example.com", "10.0.7.1").status_code for _ in range(5)] == (
        [401] * 4 + [429]
    )


def test_many_threads_never_get_past_the_budget(make_app, counted_in):
    # Through the service's own pool (or Redis client): 16 threads, 160 hits, a budget of 25.
    limits = (
        make_app(AUTHSVC_RATE_LIMIT_LOGIN="25 per hour", **counted_in)
        .extensions["authsvc"]
        .rate_limits
    )

    def attempt(_):
        try:
            limits.hit("login", "10.0.8.1")
            return True
        except RateLimited:
            return False

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(attempt, range(160)))
    assert results.count(True) == 25


# -- the client's address ----------------------------------------------------------------------


def test_a_lying_x_forwarded_for_gets_no_new_bucket_without_trusted_proxies(make_app):
    app = make_app(AUTHSVC_RATE_LIMIT_LOGIN="3 per hour")  # AUTHSVC_TRUSTED_PROXIES=0
    statuses = [
        login(
            app, f"liar{i}@example.com", "10.0.9.1", {"X-Forwarded-For": f"198.51.100.{i}"}
        ).status_code
        for i in range(5)
    ]
    assert statuses == [401, 401, 401, 429, 429]


def test_behind_one_trusted_proxy_each_client_has_its_own_bucket(make_app, db):
    app = make_app(AUTHSVC_RATE_LIMIT_LOGIN="2 per hour", AUTHSVC_TRUSTED_PROXIES="1")
    proxy = "10.0.10.1"

    def via_proxy(client_addr, email):
        return login(app, email, proxy, {"X-Forwarded-For": client_addr}).status_code

    assert [via_proxy("203.0.113.1", f"a{i}@example.com") for i in range(3)] == [401, 401, 429]
    # Another client behind the same proxy still has its whole budget.
    assert [via_proxy("203.0.113.2", f"b{i}@example.com") for i in range(3)] == [401, 401, 429]
    # What the client claims before the proxy's entry does not count: the proxy saw .1.
    assert via_proxy("198.51.100.7, 203.0.113.1", "c@example.com") == 429
    # The proxy's own address was never charged.
    assert login(app, "d@example.com", proxy).status_code == 401
    keys = [
        r["key"]
        for r in db.execute(
            "SELECT key FROM authsvc.rate_limits WHERE key LIKE 'LIMITER/login/10.0.10.1/%'"
        ).fetchall()
    ]
    assert keys == ["LIMITER/login/10.0.10.1/2/1/hour"]  # only the direct request's


def test_behind_two_trusted_proxies_the_address_the_first_one_saw_counts(make_app):
    app = make_app(AUTHSVC_RATE_LIMIT_LOGIN="2 per hour", AUTHSVC_TRUSTED_PROXIES="2")
    # client -> proxy 1 (appends the client's address) -> proxy 2 (appends proxy 1's) -> us.
    statuses = [
        login(
            app,
            f"e{i}@example.com",
            "10.0.11.2",
            {"X-Forwarded-For": f"198.51.100.{i}, 203.0.113.9, 10.0.11.1"},
        ).status_code
        for i in range(3)
    ]
    assert statuses == [401, 401, 429]


# -- settings refused at start -------------------------------------------------------------------


@pytest.mark.parametrize(
    "setting",
    [
        {"AUTHSVC_RATE_LIMIT_REFRESH": "lots"},
        {"AUTHSVC_RATE_LIMIT_LOGIN": "10 per fortnight"},
        {"AUTHSVC_RATE_LIMIT_SIGNUP": "0 per minute"},
        {"AUTHSVC_TRUSTED_PROXIES": "-1"},
        {"AUTHSVC_TRUSTED_PROXIES": "one"},
        {"REDIS_URL": "http://127.0.0.1:6379"},
    ],
    ids=lambda setting: "=".join(next(iter(setting.items()))),
)
def test_bad_settings_stop_the_start(setting, tmp_path, database_url):
    name = next(iter(setting))
    with pytest.raises(ConfigError, match=name):
        load_settings(app_overrides(database_url, tmp_path, **setting))
    with pytest.raises(ConfigError, match=name):
        create_app(app_overrides(database_url, tmp_path, **setting))


def test_the_defaults_and_a_redis_url_are_taken(tmp_path, database_url):
    settings = load_settings(
        app_overrides(database_url, tmp_path, REDIS_URL="redis://:hunter2@127.0.0.1:6379/0")
    )
    assert settings.trusted_proxies == 0
    assert settings.rate_limit_refresh == "30 per minute;300 per hour"
    assert settings.redis_url == "redis://:hunter2@127.0.0.1:6379/0"
    assert "hunter2" not in repr(settings)


# -- the storage going away ----------------------------------------------------------------------


@contextmanager
def row_locked(db_url: str, key_like: str) -> Iterator[None]:
    """Hold the lock on the counters matching `key_like` in an open transaction."""
    with psycopg.connect(db_url) as conn:
        conn.execute("SELECT 1 FROM authsvc.rate_limits WHERE key LIKE %s FOR UPDATE", (key_like,))
        yield
        conn.rollback()


def _terminate_service_connections(db) -> int:
    return len(
        db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'authsvc' AND datname = current_database()"
        ).fetchall()
    )


def test_a_connection_lost_mid_hit_is_503(make_app, database_url, db):
    app = make_app(AUTHSVC_RATE_LIMIT_LOGIN="5 per hour")
    assert login(app, "gone@example.com", "10.0.12.1").status_code == 401
    answer: dict[str, Any] = {}

    def blocked_login():
        answer["response"] = login(app, "gone@example.com", "10.0.12.1")

    with row_locked(database_url, "LIMITER/login/10.0.12.1/%"):
        worker = threading.Thread(target=blocked_login)
        worker.start()
        # The hit's statement waits for our lock; then its connection goes away under it.
        faults.wait_for_a_lock_wait(database_url, "hit", timeout=10)
        assert _terminate_service_connections(db) >= 1
        worker.join(timeout=15)
    response = answer["response"]
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == DatabaseUnavailable.code
    assert int(response.headers["Retry-After"]) >= 1
    # The pool recovers by itself and the budget carries on where it was.
    assert login(app, "gone@example.com", "10.0.12.1").status_code == 401


def test_a_database_that_refuses_connections_is_503_then_recovers(make_app, pg, db):
    app = make_app(AUTHSVC_RATE_LIMIT_LOGIN="2 per hour", AUTHSVC_DB_POOL_TIMEOUT="2")
    assert login(app, "away@example.com", "10.0.13.1").status_code == 401
    name = db.execute("SELECT current_database() AS name").fetchone()["name"]
    with psycopg.connect(pg.admin_url, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        try:
            _terminate_service_connections(db)
            started = time.monotonic()
            response = login(app, "away@example.com", "10.0.13.1")
            assert response.status_code == 503
            assert response.get_json()["error"]["code"] == DatabaseUnavailable.code
            assert time.monotonic() - started < 10  # API.md: within a few seconds
        finally:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    # Back without a restart (the pool may take a moment to reconnect), and the budget carries
    # on where it was: one hit left.
    deadline = time.monotonic() + 30
    while (status := login(app, "away@example.com", "10.0.13.1").status_code) == 503:
        assert time.monotonic() < deadline, "the service did not recover"
    assert status == 401
    assert login(app, "away@example.com", "10.0.13.1").status_code == 429


def test_redis_going_away_is_503_then_recovers(make_app):
    server = _redis_server()
    try:
        app = make_app(AUTHSVC_RATE_LIMIT_LOGIN="2 per hour", REDIS_URL=server.url)
        assert login(app, "r@example.com", "10.0.14.1").status_code == 401
        server.stop()
        started = time.monotonic()
        response = login(app, "r@example.com", "10.0.14.1")
        assert response.status_code == 503
        assert response.get_json()["error"]["code"] == DatabaseUnavailable.code
        assert time.monotonic() - started < 10
        server.start()
        # A fresh Redis (no persistence) starts the budget again.
        assert [login(app, "r@example.com", "10.0.14.1").status_code for _ in range(3)] == [
            401,
            401,
            429,
        ]
    finally:
        server.stop()


# -- upkeep ----------------------------------------------------------------------------------------


def test_expired_counters_are_deleted_as_hits_go_by(database_url, db):
    db.execute(
        "INSERT INTO authsvc.rate_limits (key, lim, expiry, window_start, current, previous, "
        "expires_at) SELECT 'old/' || i, 5, 60, now() - interval '1 hour', 1, 0, "
        "now() - interval '58 minutes' FROM generate_series(1, 1000) AS i"
    )
    database = Database(database_url, "database")
    storage = PgRateLimits(database, purge_every=4, purge_batch=300)
    limits = RateLimits(True, {"login": "1000 per hour"}, storage)
    try:
        for i in range(16):  # 4 purges of 300
            limits.hit("login", f"10.0.15.{i}")
    finally:
        database.close()
    left = db.execute(
        "SELECT count(*) FILTER (WHERE key LIKE 'old/%') AS old, "
        "count(*) FILTER (WHERE key LIKE 'LIMITER/%') AS live "
        "FROM authsvc.rate_limits"
    ).fetchone()
    assert left == {"old": 0, "live": 16}


# -- several workers, several instances ----------------------------------------------------------


@contextmanager
def only_worker(service: Gunicorn, pid: int) -> Iterator[None]:
    """Every other worker of `service` stopped (SIGSTOP): `pid` accepts every connection."""
    others = [p for p in service.worker_pids() if p != pid]
    for other in others:
        os.kill(other, signal.SIGSTOP)
    try:
        yield
    finally:
        for other in others:
            os.kill(other, signal.SIGCONT)


def test_one_budget_across_two_workers_and_two_instances(database_url, tmp_path, counted_in):
    env = {
        "DATABASE_URL": database_url,
        "JWT_SECRET_KEY": TEST_SECRET,
        "AUTHSVC_ENV": "development",
        "AUTHSVC_DATA_DIR": str(tmp_path),
        "AUTHSVC_RATE_LIMITS": "on",
        "AUTHSVC_RATE_LIMIT_LOGIN": "6 per hour",
        **CHEAP_ARGON2,
        **counted_in,
    }
    services = [Gunicorn(env, workers=2), Gunicorn(env, workers=2)]
    try:
        for service in services:
            service.wait_ready()
        workers = [(service, pid) for service in services for pid in service.worker_pids()]
        assert len(workers) == 4

        def attempt(service: Gunicorn) -> int:
            # Each claims another forwarded address: without trusted proxies that changes
            # nothing.
            lie = {"X-Forwarded-For": f"198.51.100.{uuid.uuid4().int % 250}"}
            return request(
                service.base,
                "POST",
                LOGIN,
                {"email": "shared@example.com", "password": PASSWORD},
                lie,
            )[0]

        # The budget of 6 is spent over all four workers, 2 + 2 + 1 + 1. With a budget per
        # worker or per instance every one of these would get through.
        statuses = []
        for (service, pid), n in zip(workers, (2, 2, 1, 1), strict=True):
            with only_worker(service, pid):
                statuses += [attempt(service) for _ in range(n)]
        assert statuses == [401] * 6
        # Spent for every worker of both instances.
        refused = []
        for service, pid in workers:
            with only_worker(service, pid):
                refused.append(attempt(service))
        assert refused == [429] * 4
    finally:
        for service in services:
            service.stop()
