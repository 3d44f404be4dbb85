"""Scale: signup and login at a thousand and a million accounts, reconcile, and purge.

Accounts are seeded with COPY (one real argon2id hash reused), never through a million signups.
Only plain SQL on auth.users, public.users and authsvc's session tables; the rest is HTTP and
the `authsvc` command line.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from bench import cpu, load
from bench.servers import Authsvc, Postgres, authsvc_cli, migrate, service_env
from bench.table import API, PASSWORD, Config, authsvc_probe

CHUNK = 50_000


def _old() -> str:
    # Older than any reconcile grace period: these rows are settled, not signups in flight.
    return (datetime.now(UTC) - timedelta(days=2)).isoformat()


def seed_users(
    auth_url: str, app_url: str, tag: str, start: int, count: int, password_hash: str
) -> float:
    """COPY `count` complete accounts (identity and profile, same id); seconds it took."""
    started = time.perf_counter()
    stamp = _old()
    with psycopg.connect(auth_url) as auth, psycopg.connect(app_url) as app:
        for first in range(start, start + count, CHUNK):
            last = min(first + CHUNK, start + count)
            ids = [str(uuid.uuid4()) for _ in range(first, last)]
            emails = [seed_email(tag, i) for i in range(first, last)]
            identities = "".join(
                f"{i}\t{e}\t{password_hash}\tcomplete\t{stamp}\t{stamp}\n"
                for i, e in zip(ids, emails, strict=True)
            )
            profiles = "".join(
                f"{i}\t{e}\t{stamp}\t{stamp}\n" for i, e in zip(ids, emails, strict=True)
            )
            with auth.cursor().copy(
                "COPY auth.users (id, email, password_hash, signup_state, created_at, "
                "updated_at) FROM STDIN"
            ) as copy:
                copy.write(identities)
            # One database: the profile's foreign key needs its identity committed first.
            auth.commit()
            with app.cursor().copy(
                "COPY public.users (id, email, created_at, updated_at) FROM STDIN"
            ) as copy:
                copy.write(profiles)
            app.commit()
    with psycopg.connect(auth_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE auth.users")
    with psycopg.connect(app_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE public.users")
    return time.perf_counter() - started


def seed_email(tag: str, i: int) -> str:
    """The email of seeded account `i`."""
    return f"seed-{tag}-{i}@example.com"


def inject_drift(
    auth_url: str, app_url: str, identities: int, profiles: int, password_hash: str
) -> None:
    """Old identities without a profile, and (split layout) profiles without an identity."""
    stamp = _old()
    with psycopg.connect(auth_url) as conn:
        for _ in range(identities):
            conn.execute(
                "INSERT INTO auth.users (id, email, password_hash, signup_state, created_at, "
                "updated_at) VALUES (%s, %s, %s, 'complete', %s, %s)",
                (
                    uuid.uuid4(),
                    f"drift-{uuid.uuid4().hex[:10]}@example.com",
                    password_hash,
                    stamp,
                    stamp,
                ),
            )
    with psycopg.connect(app_url) as conn:
        for _ in range(profiles):
            conn.execute(
                "INSERT INTO public.users (id, email, created_at, updated_at) "
                "VALUES (%s, %s, %s, %s)",
                (uuid.uuid4(), f"orphan-{uuid.uuid4().hex[:10]}@example.com", stamp, stamp),
            )


def time_reconcile(env: dict[str, str], expect: dict[str, int]) -> dict[str, Any]:
    """`authsvc reconcile --json` timed from outside; its counts checked against the drift."""
    started = time.perf_counter()
    done = authsvc_cli(env, "reconcile", "--json", timeout=1800)
    wall = time.perf_counter() - started
    out: dict[str, Any] = {"wall_s": round(wall, 2), "exit": done.returncode}
    try:
        report = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        out["error"] = (done.stderr or done.stdout)[-500:]
        return out
    out["elapsed_ms"] = report.get("elapsed_ms")
    found = {k: report.get(k, {}).get("count") for k in expect}
    out["found"] = found
    out["expected"] = expect
    out["counts_match"] = found == expect
    if "error" in report:
        out["error"] = report["error"]
    return out


def seed_spent_tokens(url: str, tag: str, spent: int, per_session: int = 4) -> dict[str, int]:
    """Sessions of seeded accounts, each with `per_session` spent refresh tokens and one live."""
    sessions = max(1, spent // per_session)
    stamp = _old()
    used = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    expires = (datetime.now(UTC) + timedelta(days=20)).isoformat()
    with psycopg.connect(url) as conn:
        user_ids = [
            r[0]
            for r in conn.execute(
                "SELECT id FROM auth.users WHERE email LIKE %s LIMIT %s",
                (f"seed-{tag}-%", sessions),
            ).fetchall()
        ]
        sessions = len(user_ids)
        session_ids = [str(uuid.uuid4()) for _ in user_ids]
        with conn.cursor().copy(
            "COPY authsvc.sessions (id, user_id, created_at, refreshed_at) FROM STDIN"
        ) as copy:
            copy.write(
                "".join(
                    f"{s}\t{u}\t{stamp}\t{used}\n"
                    for s, u in zip(session_ids, user_ids, strict=True)
                )
            )
        n = 0
        with conn.cursor().copy(
            "COPY authsvc.refresh_tokens (token_hash, session_id, created_at, expires_at, "
            "used_at) FROM STDIN"
        ) as copy:
            for first in range(0, sessions, CHUNK // 5):
                lines = []
                for s in session_ids[first : first + CHUNK // 5]:
                    for k in range(per_session + 1):
                        n += 1
                        digest = hashlib.sha256(f"{tag}:{n}".encode()).hexdigest()
                        used_at = used if k < per_session else "\\N"
                        lines.append(f"\\\\x{digest}\t{s}\t{stamp}\t{expires}\t{used_at}\n")
                copy.write("".join(lines))
        conn.commit()
    return {"sessions": sessions, "spent": sessions * per_session, "live": sessions}


def token_counts(url: str) -> dict[str, int]:
    """Spent and live refresh tokens, and sessions, right now."""
    with psycopg.connect(url) as conn:
        spent, live = conn.execute(
            "SELECT count(*) FILTER (WHERE used_at IS NOT NULL), "
            "count(*) FILTER (WHERE used_at IS NULL) FROM authsvc.refresh_tokens"
        ).fetchone()
        sessions = conn.execute("SELECT count(*) FROM authsvc.sessions").fetchone()[0]
    return {"spent": spent, "live": live, "sessions": sessions}


def purge_available(env: dict[str, str]) -> bool:
    """Whether this checkout's CLI has `authsvc purge`."""
    done = authsvc_cli(env, "--help", timeout=60)
    return "purge" in done.stdout


def time_purge(env: dict[str, str], url: str) -> dict[str, Any]:
    """`authsvc purge` over the seeded spent tokens, timed, with counts before and after."""
    if not purge_available(env):
        return {"available": False}
    before = token_counts(url)
    started = time.perf_counter()
    done = authsvc_cli(env, "purge", timeout=1800)
    wall = time.perf_counter() - started
    after = token_counts(url)
    return {
        "available": True,
        "exit": done.returncode,
        "wall_s": round(wall, 2),
        "before": before,
        "after": after,
        "output": (done.stdout + done.stderr)[-500:],
    }


def latency_pair(
    svc: Authsvc, pg_pid: int | None, tag: str, seeded: int, cfg: Config
) -> dict[str, Any]:
    """Signup and login at the scale concurrency; login over seeded accounts at random. With
    the CPU per request of the server and of Postgres, which other work does not move."""
    sample = max(1, min(seeded, 20_000))
    stride = max(1, seeded // sample)
    emails = [seed_email(tag, i) for i in range(0, seeded, stride)][:sample]
    out = {}
    for name, mode, path, items in (
        ("signup", "signup", f"{API}/signup", None),
        ("login", "login", f"{API}/login", emails),
    ):
        server_before = cpu.tree_cpu(svc.proc.pid)
        pg_before = cpu.tree_cpu(pg_pid) if pg_pid else {}
        r = load.run(
            svc.base,
            mode,
            path,
            cfg.scale_concurrency,
            cfg.scale_seconds,
            items=items,
            password=PASSWORD,
            tag=f"{tag}{name}{seeded}",
        )
        n = max(r.requests, 1)
        out[name] = {
            **r.as_dict(),
            "server_cpu_ms_per_req": 1000
            * cpu.spent(server_before, cpu.tree_cpu(svc.proc.pid))
            / n,
            "db_cpu_ms_per_req": 1000 * cpu.spent(pg_before, cpu.tree_cpu(pg_pid)) / n
            if pg_pid
            else 0.0,
        }
    return out


def run_scale(
    cfg: Config, pg: Postgres, log: Path, progress: Callable[[str], None]
) -> dict[str, Any]:
    """The scale section, on databases of its own; every seeded account gets the hash the
    service stored for one real signup."""
    tag = uuid.uuid4().hex[:6]
    result: dict[str, Any] = {
        "users": cfg.users,
        "small_users": cfg.small_users,
        "concurrency": cfg.scale_concurrency,
    }
    url = pg.create_database("bench_scale")
    env = service_env(url)
    migrate(env)

    pg_pid = cpu.postmaster_pid(pg.data_dir)
    svc = Authsvc(env, log)
    try:
        password_hash = authsvc_probe(svc, url)
        progress(f"scale: seeding {cfg.small_users:,} accounts")
        result["seed_small_s"] = round(
            seed_users(url, url, tag, 0, cfg.small_users, password_hash), 2
        )
        load.run(svc.base, "get", "/healthz", 4, 1)
        progress(f"scale: signup and login at {cfg.small_users:,}")
        result["at_small"] = latency_pair(svc, pg_pid, tag, cfg.small_users, cfg)
        progress(f"scale: seeding up to {cfg.users:,} accounts")
        result["seed_large_s"] = round(
            seed_users(url, url, tag, cfg.small_users, cfg.users - cfg.small_users, password_hash),
            2,
        )
        progress(f"scale: signup and login at {cfg.users:,}")
        result["at_large"] = latency_pair(svc, pg_pid, tag, cfg.users, cfg)
    finally:
        svc.stop()

    progress("scale: reconcile, one database")
    inject_drift(url, url, 3, 0, password_hash)
    result["reconcile_one"] = time_reconcile(
        env, {"identities_without_profile": 3, "profiles_without_identity": 0}
    )

    progress(f"scale: purge over {cfg.spent_tokens:,} spent refresh tokens")
    if purge_available(env):
        started = time.perf_counter()
        result["tokens_seeded"] = seed_spent_tokens(url, tag, cfg.spent_tokens)
        result["seed_tokens_s"] = round(time.perf_counter() - started, 2)
    result["purge"] = time_purge(env, url)

    progress(f"scale: seeding {cfg.users:,} accounts split across two databases")
    app_url = pg.create_database("bench_split_app")
    auth_url = pg.create_database("bench_split_auth")
    split_env = service_env(app_url, auth_url)
    migrate(split_env)
    result["seed_split_s"] = round(
        seed_users(auth_url, app_url, tag, 0, cfg.users, password_hash), 2
    )
    inject_drift(auth_url, app_url, 3, 2, password_hash)
    progress("scale: reconcile, split")
    result["reconcile_split"] = time_reconcile(
        split_env, {"identities_without_profile": 3, "profiles_without_identity": 2}
    )
    return result
