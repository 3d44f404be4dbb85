"""Signup, login, refresh and `/me` through PgBouncer in transaction mode, beside them direct.

A second authsvc (`-w 2`, the same production settings) runs on the same database through
Debian's PgBouncer (tests/pgbouncer.py: transaction mode, `ignore_startup_parameters =
extra_float_digits` and nothing else relaxed) with `AUTHSVC_DB_POOLER=transaction` and
`DATABASE_DIRECT_URL`. Each pooled row runs right after the same row against the direct
service, so other work on the machine falls on both alike; the ratio is pooled over direct.
The pooler's own CPU is counted beside the server's and Postgres's, and its SHOW STATS gives
the transactions and statements each pooled request sent.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import cpu
from bench.servers import Authsvc, migrate, service_env
from bench.table import (
    API,
    OURS_EMAILS,
    Config,
    Side,
    Table,
    authsvc_sessions,
    emails_of,
    sessions_for,
)


def pooler_available() -> str | None:
    """None when PgBouncer can run here, else why not."""
    from tests.pgbouncer import PGBOUNCER

    if not shutil.which(PGBOUNCER) and not Path(PGBOUNCER).exists():
        return "pgbouncer is not installed (bash scripts/install.sh --bench)"
    return None


def _version() -> str:
    """`pgbouncer --version`'s first line."""
    from tests.pgbouncer import PGBOUNCER

    done = subprocess.run(  # noqa: S603
        [PGBOUNCER, "--version"], capture_output=True, text=True, timeout=10
    )
    return (done.stdout or done.stderr).strip().splitlines()[0] if done.returncode == 0 else "?"


def _pooler_totals(bouncer: Any, dbname: str) -> tuple[int, int]:
    """(transactions, statements) PgBouncer has passed on for `dbname` so far."""
    for row in bouncer.console("SHOW STATS"):
        if row["database"] == dbname:
            return int(row["total_xact_count"]), int(row["total_query_count"])
    return 0, 0


def run_pooled(
    cfg: Config,
    direct: Authsvc,
    database_url: str,
    admin_url: str,
    pg_pid: int | None,
    log: Path,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """The pooled rows and their direct twins; PgBouncer and the second service are stopped
    before it returns."""
    from psycopg.conninfo import conninfo_to_dict

    from tests.pgbouncer import PgBouncer

    bouncer = PgBouncer.start(admin_url)
    pooled_svc = None
    try:
        pooled_url = bouncer.url(database_url)
        env = service_env(
            pooled_url,
            AUTHSVC_DB_POOLER="transaction",
            DATABASE_DIRECT_URL=database_url,
        )
        migrate(env)  # through DATABASE_DIRECT_URL, as the README says; a no-op here
        pooled_svc = Authsvc(env, log)
        dbname = conninfo_to_dict(database_url)["dbname"]
        table = Table(cfg, pg_pid, database_url)
        sides = {
            "direct": Side("authsvc direct", direct.base, direct.proc.pid),
            "pgbouncer": Side("authsvc pgbouncer", pooled_svc.base, pooled_svc.proc.pid),
        }
        c_hash = sorted(cfg.concurrency)[len(cfg.concurrency) // 2]
        c_me = max(cfg.concurrency)
        rows: list[dict[str, Any]] = []

        def pair(label: str, run: Callable[[Side], dict[str, Any]]) -> None:
            progress(f"pooler: {label}")
            pooled_twin = None
            for where in ("direct", "pgbouncer"):
                side = sides[where]
                pooler_before = cpu.tree_cpu(bouncer.proc.pid)
                stats_before = _pooler_totals(bouncer, dbname)
                row = run(side)
                pooler_s = cpu.spent(pooler_before, cpu.tree_cpu(bouncer.proc.pid))
                xacts, queries = (
                    a - b
                    for a, b in zip(_pooler_totals(bouncer, dbname), stats_before, strict=True)
                )
                n = max(row["requests"], 1)
                row["where"] = where
                row["pooler_cpu_ms_per_req"] = 1000 * pooler_s / n if where != "direct" else 0.0
                if where == "pgbouncer":
                    # Requests in flight when wrk stops also sent statements: a slight overcount.
                    row["xacts_per_req"] = xacts / n
                    row["statements_per_req"] = queries / n
                    pooled_twin = row
                rows.append(row)
            direct_row = rows[-2]
            if pooled_twin and direct_row["rps"]:
                pooled_twin["vs_direct"] = pooled_twin["rps"] / direct_row["rps"]

        for side in sides.values():
            table.warm(side, "signup", f"{API}/signup")
        pair(
            f"signup c={c_hash}",
            lambda side: table.measure(
                side, "signup", "POST /api/v1/auth/signup", "signup", f"{API}/signup", c_hash
            ),
        )
        emails = emails_of(database_url, OURS_EMAILS)  # the table's and the rows' above
        pair(
            f"login c={c_hash}",
            lambda side: table.measure(
                side,
                "login",
                "POST /api/v1/auth/login",
                "login",
                f"{API}/login",
                c_hash,
                items=emails,
            ),
        )

        def refresh(side: Side) -> dict[str, Any]:
            # Each connection follows its own chain of rotations, as in the main table.
            sessions = authsvc_sessions(side.base, emails, 2 * c_hash + 4)
            return table.measure(
                side,
                "refresh",
                "POST /api/v1/auth/refresh",
                "refresh",
                f"{API}/refresh",
                c_hash,
                items=[s["refresh_token"] for s in sessions],
            )

        pair(f"refresh c={c_hash}", refresh)

        def me(side: Side) -> dict[str, Any]:
            tokens = [
                s["access_token"] for s in authsvc_sessions(side.base, emails, sessions_for(c_me))
            ]
            return table.measure(
                side, "me", "GET /api/v1/auth/me", "bearer", f"{API}/me", c_me, items=tokens
            )

        pair(f"me c={c_me}", me)
        return {
            "rows": rows,
            "pool_mode": "transaction",
            "pgbouncer": _version(),
        }
    finally:
        if pooled_svc is not None:
            pooled_svc.stop()
        bouncer.stop()
