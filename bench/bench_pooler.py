"""What a statement timeout costs behind PgBouncer in transaction mode, per way of setting it.

The service's hot paths are single autocommit statements (the login lookup, the revocation
check). A pooler refuses the `options` startup parameter, so the timeout must come from
somewhere else. This prints throughput and latency of the login lookup for:

- server-side: the role's (or database's) own statement_timeout; the statement alone;
- SET LOCAL: BEGIN, SET LOCAL statement_timeout, the statement, COMMIT (four round trips);
- SET LOCAL pipelined: the same four in one psycopg pipeline;
- direct: no pooler, the timeout as a startup parameter (what the service does without one).

Asserts nothing; targets are read by people.

    python bench/bench_pooler.py [--statements 3000] [--concurrency 4] [--rounds 3]

Uses TEST_DATABASE_URL's server when set, else a throwaway embedded cluster; PgBouncer is
Debian's (`apt-get install pgbouncer`).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from authsvc.stores.pg.identities import COLUMNS  # noqa: E402
from tests.conftest import migrate  # noqa: E402
from tests.pgbouncer import PgBouncer  # noqa: E402
from tests.pgcluster import PgServer  # noqa: E402

# The service's own login lookup (PgIdentities.find_by_email).
LOOKUP = f"SELECT {COLUMNS} FROM auth.users WHERE lower(email) = lower(%s)"
TIMEOUT_MS = 15000


def server_side(conn: psycopg.Connection, email: str) -> None:
    conn.execute(LOOKUP, (email,)).fetchone()


def set_local(conn: psycopg.Connection, email: str) -> None:
    with conn.transaction():
        conn.execute(f"SET LOCAL statement_timeout = {TIMEOUT_MS}")
        conn.execute(LOOKUP, (email,)).fetchone()


def set_local_pipelined(conn: psycopg.Connection, email: str) -> None:
    with conn.pipeline():
        with conn.transaction():
            conn.execute(f"SET LOCAL statement_timeout = {TIMEOUT_MS}")
            cur = conn.execute(LOOKUP, (email,))
        cur.fetchone()


WAYS: list[tuple[str, str, Callable[[psycopg.Connection, str], None]]] = [
    ("server-side setting (pooler)", "pooled", server_side),
    ("SET LOCAL per transaction (pooler)", "pooled", set_local),
    ("SET LOCAL, pipelined (pooler)", "pooled", set_local_pipelined),
    ("startup parameter (direct, no pooler)", "direct", server_side),
]


def measure(
    url: str,
    direct: bool,
    fn: Callable[[psycopg.Connection, str], None],
    statements: int,
    concurrency: int,
) -> dict[str, float]:
    kwargs: dict = {"autocommit": True}
    if direct:
        kwargs["options"] = f"-c statement_timeout={TIMEOUT_MS}"
    else:
        kwargs["prepare_threshold"] = None
    per_thread = statements // concurrency

    def worker(i: int) -> list[float]:
        out = []
        with psycopg.connect(url, **kwargs) as conn:
            for n in range(per_thread):
                started = time.perf_counter()
                fn(conn, f"bench-{i}-{n % 50}@example.com")
                out.append((time.perf_counter() - started) * 1000)
        return out

    with ThreadPoolExecutor(concurrency) as pool:
        started = time.perf_counter()
        latencies = [ms for part in pool.map(worker, range(concurrency)) for ms in part]
        wall = time.perf_counter() - started
    latencies.sort()
    return {
        "per_s": len(latencies) / wall,
        "p50": statistics.median(latencies),
        "p95": latencies[int(0.95 * (len(latencies) - 1))],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--statements", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    pg = PgServer.start()
    bouncer = None
    try:
        url = pg.create_database("authsvc_bench")
        migrate(url)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO auth.users (id, email, password_hash, signup_state) "
                "SELECT gen_random_uuid(), 'bench-' || i || '-' || n || '@example.com', 'x', "
                "'complete' FROM generate_series(0, 15) i, generate_series(0, 49) n"
            )
            conn.execute(f"ALTER DATABASE {conninfo_db(url)} SET statement_timeout = {TIMEOUT_MS}")
        bouncer = PgBouncer.start(pg.admin_url)
        service_url = pg.service_url(url)  # as the service connects: its non-superuser role
        urls = {"pooled": bouncer.url(service_url), "direct": service_url}
        results: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in WAYS}
        for _ in range(args.rounds):  # interleaved, so a noisy neighbour hits every way alike
            for name, where, fn in WAYS:
                results[name].append(
                    measure(urls[where], where == "direct", fn, args.statements, args.concurrency)
                )
        print(
            f"{args.statements} login lookups per round, {args.concurrency} connections, "
            f"{args.rounds} rounds (median of rounds)"
        )
        print(f"{'statement timeout set by':40} {'stmts/s':>9} {'p50 ms':>8} {'p95 ms':>8}")
        base = statistics.median(r["per_s"] for r in results[WAYS[0][0]])
        for name, _, _ in WAYS:
            rows = results[name]
            per_s = statistics.median(r["per_s"] for r in rows)
            print(
                f"{name:40} {per_s:9.0f} {statistics.median(r['p50'] for r in rows):8.3f} "
                f"{statistics.median(r['p95'] for r in rows):8.3f}   "
                f"({per_s / base:.2f}x server-side)"
            )
    finally:
        if bouncer is not None:
            bouncer.stop()
        pg.stop()


def conninfo_db(url: str) -> str:
    from psycopg.conninfo import conninfo_to_dict

    return '"' + conninfo_to_dict(url)["dbname"] + '"'


if __name__ == "__main__":
    main()
