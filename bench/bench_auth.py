"""Latency of signup and login under gunicorn, with production and cheap hashing.

Prints a table and ratios; asserts nothing (targets are read by people, not by CI).

    python bench/bench_auth.py [--requests 200] [--concurrency 4]

Uses TEST_DATABASE_URL's server when set, else a throwaway embedded cluster.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import PASSWORD, TEST_SECRET, migrate  # noqa: E402
from tests.pgcluster import PgServer  # noqa: E402
from tests.service import Gunicorn, request  # noqa: E402

PROFILES = {
    "owasp-min (t=2, m=19456 KiB)": {},
    "cheap (t=1, m=8 KiB)": {"AUTHSVC_ARGON2_TIME_COST": "1", "AUTHSVC_ARGON2_MEMORY_KIB": "8"},
}


def timed(base, method, path, body=None, headers=None):
    started = time.perf_counter()
    status, _, _ = request(base, method, path, body, headers)
    return status, (time.perf_counter() - started) * 1000


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def summarize(latencies, n, wall):
    return {"ok": n, "p50": statistics.median(latencies), "p95": percentile(latencies, 0.95),
            "rps": n / wall}


def run(base, n, concurrency, fn):
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        started = time.perf_counter()
        results = list(pool.map(fn, range(n)))
        wall = time.perf_counter() - started
    latencies = [ms for _, ms in results]
    halves = [[ms for i, (_, ms) in enumerate(results) if i % 2 == k] for k in (0, 1)]
    return {
        "split": [summarize(h, len(h), wall / 2) for h in halves] if n > 1 else [],
        "ok": sum(1 for s, _ in results if s in (200, 201, 401)),
        "p50": statistics.median(latencies),
        "p95": percentile(latencies, 0.95),
        "rps": n / wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    pg = PgServer.start()
    rows = []
    try:
        for name, argon in PROFILES.items():
            url = pg.create_database("authsvc_bench")
            migrate(url)
            server = Gunicorn({"DATABASE_URL": url, "JWT_SECRET_KEY": TEST_SECRET,
                               "AUTHSVC_RATE_LIMITS": "off", "AUTHSVC_DATA_DIR": "/tmp",
                               **argon})
            try:
                server.wait_ready()
                tag = uuid.uuid4().hex[:6]
                signup = run(server.base, args.requests, args.concurrency, lambda i: timed(
                    server.base, "POST", "/api/v1/auth/signup",
                    {"email": f"b{tag}{i}@example.com", "password": PASSWORD}))
                login = run(server.base, args.requests, args.concurrency, lambda i: timed(
                    server.base, "POST", "/api/v1/auth/login",
                    {"email": f"b{tag}{i}@example.com", "password": PASSWORD}))
                # Wrong password and unknown email interleaved in one run, so machine load
                # falls on both alike.
                mixed = run(server.base, 2 * args.requests, args.concurrency, lambda i: timed(
                    server.base, "POST", "/api/v1/auth/login",
                    {"email": (f"b{tag}{i // 2}@example.com" if i % 2 == 0
                               else f"nobody{tag}{i}@example.com"),
                     "password": "wrong password x"}))
                wrong, unknown = mixed["split"]
                for op, r in (("signup", signup), ("login", login),
                              ("login wrong password", wrong), ("login unknown email", unknown)):
                    rows.append((name, op, r))
                print(f"\n[{name}] unknown-email / wrong-password p50 ratio: "
                      f"{unknown['p50'] / wrong['p50']:.2f}")
            finally:
                server.stop()
                pg.drop_database(url)
    finally:
        pg.stop()
    print(f"\n{args.requests} requests each, concurrency {args.concurrency}, gunicorn -w 2 "
          "(gthread, 4 threads)")
    print(f"{'hashing':32} {'operation':22} {'ok':>5} {'p50 ms':>8} {'p95 ms':>8} {'req/s':>7}")
    for name, op, r in rows:
        print(f"{name:32} {op:22} {r['ok']:>5} {r['p50']:>8.1f} {r['p95']:>8.1f} {r['rps']:>7.1f}")
    by = {(n, o): r for n, o, r in rows}
    names = list(PROFILES)
    print(f"\nsignup p50 with / without the production hash: "
          f"{by[(names[0], 'signup')]['p50'] / by[(names[1], 'signup')]['p50']:.1f}x")


if __name__ == "__main__":
    main()
