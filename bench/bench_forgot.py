"""POST /api/v1/auth/password/forgot for a known and an unknown address: about the same time?

The answer is 202 either way; the lookup, the token and the mail happen off the request path,
so the two latencies should match. Known and unknown requests are interleaved in one run, so
machine load falls on both alike. Prints p50/p95 and the ratio; asserts nothing.

    python bench/bench_forgot.py [--requests 300] [--concurrency 4]

Uses TEST_DATABASE_URL's server when set, else a throwaway embedded cluster; mail goes to a
loopback SMTP server in this process.
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

from tests.conftest import PASSWORD, migrate  # noqa: E402
from tests.mailbox import Mailbox  # noqa: E402
from tests.pgcluster import PgServer  # noqa: E402
from tests.service import Gunicorn, call, service_env  # noqa: E402

KNOWN = 20  # accounts whose addresses are asked for, round robin


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300, help="per kind of address")
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    pg = PgServer.start()
    url = pg.create_database("authsvc_bench_forgot")
    migrate(url)
    try:
        with Mailbox() as mailbox, tempfile.TemporaryDirectory() as data:
            env = service_env(data, DATABASE_URL=pg.service_url(url), SMTP_URL=mailbox.url)
            server = Gunicorn.started(env)
            try:
                for i in range(KNOWN):
                    assert (
                        call(
                            server.port,
                            "POST",
                            "/api/v1/auth/signup",
                            {"email": f"known{i}@example.com", "password": PASSWORD},
                        ).status
                        == 201
                    )

                def forgot(i: int) -> tuple[str, int, float]:
                    known = i % 2 == 0
                    email = f"known{i % KNOWN}@example.com" if known else f"ghost{i}@example.com"
                    started = time.perf_counter()
                    reply = call(
                        server.port, "POST", "/api/v1/auth/password/forgot", {"email": email}
                    )
                    return (
                        "known" if known else "unknown",
                        reply.status,
                        (time.perf_counter() - started) * 1000,
                    )

                for i in range(20):  # warm up both workers' pools
                    forgot(i)
                with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
                    results = list(pool.map(forgot, range(2 * args.requests)))
            finally:
                server.stop()
            received = len(mailbox.messages)
    finally:
        pg.drop_database(url)
        pg.stop()
    print(
        f"POST /api/v1/auth/password/forgot, {args.requests} known and {args.requests} "
        f"unknown addresses interleaved, concurrency {args.concurrency}, gunicorn -w 2"
    )
    print(f"{'address':10} {'statuses':>10} {'p50 ms':>8} {'p95 ms':>8} {'mean ms':>8}")
    p50 = {}
    for kind in ("known", "unknown"):
        ms = [t for k, _, t in results if k == kind]
        statuses = sorted({s for k, s, _ in results if k == kind})
        p50[kind] = statistics.median(ms)
        print(
            f"{kind:10} {','.join(map(str, statuses)):>10} {p50[kind]:>8.2f} "
            f"{percentile(ms, 0.95):>8.2f} {statistics.fmean(ms):>8.2f}"
        )
    print(f"unknown / known p50 ratio: {p50['unknown'] / p50['known']:.2f}")
    print(f"mail received by the SMTP server: {received} (signups' confirmations and resets)")


if __name__ == "__main__":
    main()
