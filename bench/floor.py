"""`python -m bench.floor`: authsvc beside the floor (bench/floor_app.py) in alternating runs.

    python -m bench.floor              3 rounds of 8 s light rows and 12 s hash rows
    python -m bench.floor --quick      the smoke-test size

Both serve from the repo root under the same gunicorn.conf.py (2 workers, the same worker class,
threads and hash gate), on one throwaway Postgres, driven by the bench's wrk. Each round takes
a hash-ceiling sample, then runs every row on authsvc and on the floor back to back, so the
machine's drift falls on both alike. Per row it prints throughput (median and spread over the
rounds), the ratio each system reaches (signup and login: share of the round's hash ceiling;
GET /me: over its own light endpoint) and the CPU per request of the server's workers and of
Postgres. The floor does only what no auth service can skip, so its ratios are what this
machine allows; the gap to authsvc's is authsvc's own work. No number is judged here.
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

from bench import ceiling, cpu, load
from bench.floor_app import TABLES
from bench.servers import Authsvc, Postgres, http, migrate, service_env
from bench.table import API, PASSWORD, authsvc_probe, authsvc_sessions


def session_id(access_token: str) -> str:
    """The `sid` claim of one of our access tokens (read, not verified: the bench minted it)."""
    payload = access_token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sid"]


def measure(server: Any, pg_pid: int | None, mode: str, path: str, c: int, secs: float, **kw: Any):
    """One wrk run, with the CPU the server's processes and Postgres spent per request."""
    before = cpu.tree_cpu(server.proc.pid), cpu.tree_cpu(pg_pid) if pg_pid else {}
    run = load.run(server.base, mode, path, c, secs, password=PASSWORD, **kw)
    after = cpu.tree_cpu(server.proc.pid), cpu.tree_cpu(pg_pid) if pg_pid else {}
    n = max(1, run.requests)
    return {
        "rps": run.rps,
        "p50_ms": run.p50_ms,
        "errors": run.errors,
        "server_ms": cpu.spent(before[0], after[0]) / n * 1000,
        "pg_ms": cpu.spent(before[1], after[1]) / n * 1000,
    }


ROWS = (  # name, concurrency, authsvc (mode, path), floor (mode, path), hash row
    ("signup", 8, ("signup", f"{API}/signup"), ("signup", "/signup"), True),
    ("login", 8, ("login", f"{API}/login"), ("login", "/login"), True),
    ("light", 32, ("get", "/healthz"), ("get", "/ok"), False),
    ("me", 32, ("bearer", f"{API}/me"), ("bearer", "/me"), False),
)


def run(seconds: float, hash_seconds: float, rounds: int, users: int) -> dict[str, Any]:
    pg = Postgres()
    log = Path(pg.data_dir) / "servers.log"
    servers: list[Any] = []
    try:
        url = pg.create_database("floor")
        env = service_env(url)
        migrate(env)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(TABLES)
        ours = Authsvc(env, log)
        servers.append(ours)
        stored = authsvc_probe(ours, url)
        cost = ceiling.argon2_parameters(stored)
        emails = [f"floor-{uuid.uuid4().hex[:10]}@example.com" for _ in range(users)]
        for email in emails:
            status, body, _ = http(
                ours.base, "POST", f"{API}/signup", {"email": email, "password": PASSWORD}
            )
            if status != 201:
                raise RuntimeError(f"seed signup answered {status}: {body}")
        tokens = [s["access_token"] for s in authsvc_sessions(ours.base, emails, users)]
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO bench_floor.users (id, email, password_hash) "
                "SELECT id, email, password_hash FROM auth.users WHERE email = ANY(%s)",
                (emails,),
            )
        floor_env = dict(env, FLOOR_ARGON2=f"{cost['time_cost']},{cost['memory_kib']},1")
        floor = Authsvc(floor_env, log, app="bench.floor_app:app", ready="/ok")
        servers.append(floor)
        # What each side's wrk script picks from: its emails, or its access token / session id.
        items = {"login": (emails, emails), "bearer": (tokens, [session_id(t) for t in tokens])}
        pg_pid = cpu.postmaster_pid(Path(pg.data_dir))
        samples: list[float] = []
        results: dict[str, dict[str, list[dict]]] = {
            r[0]: {"authsvc": [], "floor": []} for r in ROWS
        }
        for i in range(rounds):
            samples.append(ceiling.argon2_rate(cost, hash_seconds / 2)["rate"])
            for name, c, (mode, path), (fmode, fpath), hashes in ROWS:
                secs = hash_seconds if hashes else seconds
                tag = f"r{i}{name}"
                our_items, their_items = items.get(mode, (None, None))
                print(f"[{time.strftime('%H:%M:%S')}] round {i + 1}/{rounds}: {name}", flush=True)
                results[name]["authsvc"].append(
                    measure(ours, pg_pid, mode, path, c, secs, items=our_items, tag=tag + "a")
                )
                results[name]["floor"].append(
                    measure(floor, pg_pid, fmode, fpath, c, secs, items=their_items, tag=tag + "f")
                )
        return {"ceiling": samples, "cost": cost, "rows": results, "rounds": rounds}
    finally:
        for server in reversed(servers):
            server.stop()
        pg.stop()


def ratios(data: dict[str, Any], system: str, name: str) -> list[float]:
    """Per round: a hash row's share of that round's ceiling; /me over that round's light row."""
    runs = data["rows"][name][system]
    if name in ("signup", "login"):
        return [r["rps"] / c for r, c in zip(runs, data["ceiling"], strict=True)]
    light = data["rows"]["light"][system]
    return [r["rps"] / lt["rps"] for r, lt in zip(runs, light, strict=True)]


def report(data: dict[str, Any]) -> str:
    spread = data["ceiling"]
    lines = [
        f"hash ceiling: {statistics.median(spread):.1f}/s (samples {min(spread):.1f} to "
        f"{max(spread):.1f}), argon2id t={data['cost']['time_cost']} "
        f"m={data['cost']['memory_kib']} KiB; {data['rounds']} rounds, medians (min-max)",
        "",
        f"{'row':14} {'system':8} {'req/s':>22} {'ratio':>20} {'server ms':>10} {'pg ms':>7}"
        f" {'errors':>6}",
    ]
    what = {"signup": "of ceiling", "login": "of ceiling", "me": "of light", "light": ""}
    for name, c, *_ in ROWS:
        for system in ("authsvc", "floor"):
            runs = data["rows"][name][system]
            rps = [r["rps"] for r in runs]
            cell = f"{statistics.median(rps):.0f} ({min(rps):.0f}-{max(rps):.0f})"
            ratio = ""
            if what[name]:
                rs = ratios(data, system, name)
                ratio = f"{statistics.median(rs):.2f} ({min(rs):.2f}-{max(rs):.2f})"
            server = statistics.median(r["server_ms"] for r in runs)
            pg_ms = statistics.median(r["pg_ms"] for r in runs)
            errors = sum(r["errors"] for r in runs)
            lines.append(
                f"{name + f' c={c}':14} {system:8} {cell:>22} {ratio:>20} {server:>10.3f}"
                f" {pg_ms:>7.3f} {errors:>6}"
            )
    lines.append("")
    lines.append("ratio: signup and login as a share of the hash ceiling; me over the same")
    lines.append("server's light row (authsvc: /healthz, floor: /ok). CPU is per request.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.floor", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="1 round of 1 s rows")
    parser.add_argument("--seconds", type=float, default=8, help="each light row (default 8)")
    parser.add_argument("--hash-seconds", type=float, default=12, help="each hash row (default 12)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.hash_seconds, args.rounds = 1, 2, 1
    data = run(args.seconds, args.hash_seconds, args.rounds, users=4 if args.quick else 16)
    print(report(data))
    if args.json:
        args.json.write_text(json.dumps(data, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
