"""What a rate-limit check costs on the hot path of signup, login and refresh.

Prints, for each storage (the service's Postgres, Redis, and no limits at all):
- the latency of one RateLimits.hit("login", address, account) (two rules for each of two keys:
  four counters), sequentially and from 8 threads at once;
- the latency of a whole POST /api/v1/auth/login (unknown email, cheap hashing) in-process, the
  storages taking turns, so the difference to "off" is what a limit adds to a request;
- for Postgres, the round trips each hit makes, read from pg_stat_database (every statement
  in autocommit is one committed transaction, and so is the empty query the pool runs to check
  a connection before handing it out).

Asserts nothing (targets are read by people, not by CI).

    python bench/bench_ratelimit.py [--hits 2000]

Uses TEST_DATABASE_URL's server when set, else a throwaway embedded cluster; Redis rows need
Debian's redis-server.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg  # noqa: E402

from authsvc import create_app  # noqa: E402
from tests.conftest import PASSWORD, app_overrides, migrate  # noqa: E402
from tests.pgcluster import PgServer  # noqa: E402
from tests.redisserver import RedisServer, redis_server_missing  # noqa: E402

LOGIN_RULES = "1000000 per minute;1000000 per hour"  # never refuses: every hit is counted


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def timed(fn, n: int, threads: int = 1) -> tuple[float, float, float]:
    """(p50 ms, p95 ms, calls per second) of `n` calls of fn(i)."""

    def one(i: int) -> float:
        started = time.perf_counter()
        fn(i)
        return (time.perf_counter() - started) * 1000

    started = time.perf_counter()
    if threads == 1:
        latencies = [one(i) for i in range(n)]
    else:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            latencies = list(pool.map(one, range(n)))
    wall = time.perf_counter() - started
    return statistics.median(latencies), percentile(latencies, 0.95), n / wall


def committed(url: str) -> int:
    """Transactions committed in the database so far (a backend reports its own when idle for
    a while, or at exit: close the pools first)."""
    time.sleep(0.5)
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hits", type=int, default=2000)
    args = parser.parse_args()
    pg = PgServer.start()
    redis = None if redis_server_missing() else RedisServer()
    data_dir = tempfile.TemporaryDirectory()
    apps = {}
    try:
        url = pg.create_database("authsvc_bench")
        migrate(url)
        storages = {"off": {"AUTHSVC_RATE_LIMITS": "off"}, "postgres": {}}
        if redis is not None:
            storages["redis"] = {"REDIS_URL": redis.url}
        for name, extra in storages.items():
            settings = {
                "AUTHSVC_RATE_LIMITS": "on",
                "AUTHSVC_RATE_LIMIT_LOGIN": LOGIN_RULES,
                **extra,
            }
            apps[name] = create_app(app_overrides(url, data_dir.name, **settings))
        rows = {name: measure_hits(app, url, args.hits) for name, app in apps.items()}
        logins = measure_logins(apps, max(500, args.hits // 2))
    finally:
        for app in apps.values():
            app.extensions["authsvc"].stores.close()
        data_dir.cleanup()
        if redis is not None:
            redis.stop()
        pg.stop()

    print(f"\nRateLimits.hit('login', address, account): 4 counters; {args.hits} hits each")
    print(
        "login: POST /api/v1/auth/login in-process (unknown email, cheap hashing), the storages"
        " taking turns request by request\n"
    )
    print(
        f"{'storage':<10}{'hit p50':>10}{'hit p95':>10}{'hits/s':>9}"
        f"{'8 thr p50':>11}{'8 thr/s':>9}{'login p50':>11}{'login p95':>11}"
        f"{'trips/hit':>11}"
    )
    for name, (serial, parallel, round_trips) in rows.items():
        login = logins[name]
        shown = f"{round_trips:.3f}" if name == "postgres" else "-"
        print(
            f"{name:<10}{serial[0]:>8.3f}ms{serial[1]:>8.3f}ms{serial[2]:>9.0f}"
            f"{parallel[0]:>9.3f}ms{parallel[2]:>9.0f}{login[0]:>9.3f}ms{login[1]:>9.3f}ms"
            f"{shown:>11}"
        )
    print(
        "\ntrips/hit: transactions committed per hit in pg_stat_database: the pool's liveness "
        "check (an empty query) and the one counting statement, plus both again for the "
        "purge of expired counters every 64th hit: 2 + 2/64 = 2.031 expected."
    )


def measure_hits(app, url: str, n: int):
    """((p50, p95, rate) one thread, (p50, p95, rate) 8 threads, round trips per hit)."""
    limits = app.extensions["authsvc"].rate_limits
    limits.hit("login", "warm-up", "account:warm-up")

    def hit(i: int) -> None:
        limits.hit("login", f"10.{i % 250}.0.1", f"account:u{i}@example.com")

    app.extensions["authsvc"].stores.close()  # its backends report their counts at exit
    before = committed(url)
    serial = timed(hit, n)
    app.extensions["authsvc"].stores.close()  # the pool opens again on the next use
    round_trips = (committed(url) - before) / n
    return serial, timed(hit, n, threads=8), round_trips


def measure_logins(apps: dict, n: int) -> dict[str, tuple[float, float]]:
    """(p50, p95) ms of a login per storage; the storages take turns, so load on the machine
    falls on all of them alike."""
    clients = {name: app.test_client() for name, app in apps.items()}
    latencies: dict[str, list[float]] = {name: [] for name in apps}
    for i in range(n + 50):
        for name, client in clients.items():
            started = time.perf_counter()
            response = client.post(
                "/api/v1/auth/login",
                json={"email": f"v{i}@example.com", "password": PASSWORD},
                environ_base={"REMOTE_ADDR": f"10.{i % 250}.1.1"},
            )
            if i >= 50:  # after warming up
                latencies[name].append((time.perf_counter() - started) * 1000)
            assert response.status_code == 401, response.get_json()
    return {name: (statistics.median(v), percentile(v, 0.95)) for name, v in latencies.items()}


if __name__ == "__main__":
    main()
