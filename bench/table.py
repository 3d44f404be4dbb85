"""The main table: each endpoint at each concurrency beside its ceiling, authsvc and the peer."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from bench import ceiling, cpu, load
from bench.servers import Authsvc, Peer, http, peer_hash_rate

PASSWORD = "tall-river-quiet-lamp-42"
API = "/api/v1/auth"


@dataclass
class Config:
    """How long and how hard: the defaults are the full run, `--quick` the smoke-test size."""

    seconds: float = 10.0
    hash_seconds: float = 20.0  # signup and login rows: long next to their latency at c=32
    concurrency: tuple[int, ...] = (1, 8, 32)
    repeats: int = 5
    warmup: float = 2.0
    ceiling_seconds: float = 3.0
    ceiling_bookends: bool = True  # hash-ceiling samples before and after all the rows too
    # Hashes at once per core in the crowded sample: a worker's threads (gunicorn.conf.py's 4)
    # over a core each, as the server runs them when more requests than cores are in flight.
    crowded_threads: int = 4
    timing_pairs: int = 4  # alternating wrong-password / unknown-email runs
    users: int = 1_000_000
    small_users: int = 1_000
    spent_tokens: int = 1_000_000
    scale_seconds: float = 10.0
    scale_concurrency: int = 1
    peer: str = "auto"  # auto | on | off
    cores: int = field(default_factory=lambda: os.cpu_count() or 1)


@dataclass
class Side:
    """One system under load: where it listens and what its process tree is."""

    name: str
    base: str
    pid: int


class Table:
    """Runs the rows and keeps them, with the CPU each side and Postgres spent on each."""

    def __init__(self, cfg: Config, pg_pid: int | None, database_url: str) -> None:
        self.cfg = cfg
        self.pg_pid = pg_pid
        self.database_url = database_url
        self.rows: list[dict[str, Any]] = []
        self.tag = uuid.uuid4().hex[:6]
        self.runs = 0  # every run's emails are its own, warm-ups and repeats included

    def measure(
        self,
        side: Side,
        operation: str,
        endpoint: str,
        mode: str,
        path: str,
        connections: int,
        *,
        items: list[str] | None = None,
        record: bool = True,
        seconds: float | None = None,
        expect_refusal: bool = False,
        **extra: Any,
    ) -> dict[str, Any]:
        """One wrk run against `side`, with server and database CPU per request. With
        `expect_refusal`, 4xx answers are the point and a success counts as the error."""
        server_before = cpu.tree_cpu(side.pid)
        pg_before = cpu.tree_cpu(self.pg_pid) if self.pg_pid else {}
        if seconds is None:
            hashing = operation.startswith(("signup", "login"))
            seconds = self.cfg.hash_seconds if hashing else self.cfg.seconds
        result = load.run(
            side.base,
            mode,
            path,
            connections,
            seconds,
            items=items,
            password=PASSWORD,
            tag=f"{self.tag}r{self.runs}",
        )
        self.runs += 1
        server_after = cpu.tree_cpu(side.pid)
        server_s = cpu.spent(server_before, server_after)
        # How the work fell between the workers: keep-alive connections stay where they landed.
        workers = sorted(
            (
                server_after[w] - server_before.get(w, 0.0)
                for w in cpu.children(side.pid)
                if w in server_after
            ),
            reverse=True,
        )
        worker_share = [round(w / sum(workers), 2) for w in workers] if sum(workers) else []
        pg_s = cpu.spent(pg_before, cpu.tree_cpu(self.pg_pid)) if self.pg_pid else 0.0
        if expect_refusal:
            refused = result.error_kinds.pop("status", 0)
            if result.requests - refused:
                result.error_kinds["not refused"] = result.requests - refused
            result.errors = sum(result.error_kinds.values())
        n = max(result.requests, 1)
        row = {
            "system": side.name,
            "operation": operation,
            "endpoint": endpoint,
            "concurrency": connections,
            **result.as_dict(),
            "server_cpu_ms_per_req": 1000 * server_s / n,
            "db_cpu_ms_per_req": 1000 * pg_s / n,
            "worker_cpu_share": worker_share,
            **extra,
        }
        if record:
            self.rows.append(row)
        return row

    def warm(self, side: Side, mode: str, path: str, items: list[str] | None = None) -> None:
        """A short unrecorded run, so the first row does not pay for cold workers."""
        if self.cfg.warmup > 0:
            self.measure(
                side,
                "warmup",
                path,
                mode,
                path,
                8,
                items=items,
                record=False,
                seconds=self.cfg.warmup,
            )


# -- authsvc -------------------------------------------------------------------------------


def authsvc_probe(svc: Authsvc, database_url: str) -> str:
    """Sign one account up over HTTP and read its stored hash back with plain SQL."""
    email = f"probe-{uuid.uuid4().hex[:8]}@example.com"
    status, body, _ = http(
        svc.base, "POST", f"{API}/signup", {"email": email, "password": PASSWORD}
    )
    if status != 201:
        raise RuntimeError(f"probe signup answered {status}: {body}")
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT password_hash FROM auth.users WHERE id = %s", (body["data"]["user"]["id"],)
        ).fetchone()
    if not row or not row[0]:
        raise RuntimeError("the probe account has no stored hash")
    return row[0]


def authsvc_sessions(base: str, emails: list[str], n: int) -> list[dict[str, str]]:
    """`n` fresh sessions (access and refresh token) from logins of these accounts."""

    def one(i: int) -> dict[str, str]:
        status, body, _ = http(
            base, "POST", f"{API}/login", {"email": emails[i % len(emails)], "password": PASSWORD}
        )
        if status != 200:
            raise RuntimeError(f"login for a session answered {status}: {body}")
        return body["data"]["session"]

    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(one, range(n)))


def emails_of(database_url: str, sql: str, limit: int = 20_000) -> list[str]:
    """Emails of accounts that exist now (plain SQL), for the login rows."""
    with psycopg.connect(database_url) as conn:
        return [r[0] for r in conn.execute(sql + " LIMIT %s", (limit,)).fetchall()]


OURS_EMAILS = "SELECT email FROM auth.users WHERE signup_state = 'complete' ORDER BY random()"
PEER_EMAILS = 'SELECT email FROM "user" ORDER BY random()'


def peer_cookies(base: str, emails: list[str], n: int) -> list[str]:
    """`n` session cookies from sign-ins of these accounts."""

    def one(i: int) -> str:
        status, body, headers = http(
            base,
            "POST",
            "/api/auth/sign-in/email",
            {"email": emails[i % len(emails)], "password": PASSWORD},
        )
        cookie = headers.get("Set-Cookie", "") if headers else ""
        if status != 200 or not cookie:
            raise RuntimeError(f"peer sign-in answered {status}: {body}")
        return cookie.split(";", 1)[0]

    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(one, range(n)))


# -- the run -------------------------------------------------------------------------------


def run_table(
    cfg: Config,
    svc: Authsvc,
    database_url: str,
    peer: Peer | None,
    pg_pid: int | None,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """Every row of the main table, interleaving authsvc and the peer so load falls on both."""
    table = Table(cfg, pg_pid, database_url)
    ours = Side("authsvc", svc.base, svc.proc.pid)
    theirs = Side("better-auth", peer.base, peer.proc.pid) if peer else None

    stored = authsvc_probe(svc, database_url)
    params = ceiling.argon2_parameters(stored)
    progress(f"argon2 parameters read back: {params}")
    ceilings: dict[str, Any] = {"authsvc": {"parameters": params, "samples": []}}
    if theirs:
        ceilings["better-auth"] = {"samples": []}

    def sample(system: str) -> dict[str, Any]:
        if system == "authsvc":
            s = ceiling.argon2_rate(params, cfg.ceiling_seconds, cfg.cores)
        else:
            s = peer_hash_rate(cfg.ceiling_seconds, cfg.cores)
        ceilings[system]["samples"].append(s)
        return s

    def measure_ceilings() -> None:
        progress("hash ceilings")
        sample("authsvc")
        if theirs:
            sample("better-auth")

    def hashing(side: Side, *args: Any, **kwargs: Any) -> dict[str, Any]:
        # On a machine shared with other work the hash rate moves from minute to minute:
        # each hashing row gets a sample of its own ceiling taken just before it.
        s = sample(side.name)
        return table.measure(side, *args, hash_sample=s, **kwargs)

    def both(label: str, fn_ours: Callable[[], None], fn_theirs: Callable[[], None] | None) -> None:
        progress(label)
        fn_ours()
        if theirs and fn_theirs:
            fn_theirs()

    if cfg.ceiling_bookends:
        measure_ceilings()
        progress(f"the hash, {cfg.crowded_threads} at once per core")
        ceilings["authsvc"]["crowded"] = ceiling.argon2_rate(
            params, cfg.ceiling_seconds, cfg.cores, cfg.crowded_threads
        )
    table.warm(ours, "get", "/healthz")
    if theirs:
        table.warm(theirs, "get", "/api/auth/ok")

    # Light endpoints first: their rows are the ceiling of the session rows.
    for c in cfg.concurrency:
        both(
            f"healthz c={c}",
            lambda c=c: table.measure(ours, "healthz", "GET /healthz", "get", "/healthz", c),
            lambda c=c: table.measure(
                theirs, "healthz", "GET /api/auth/ok", "get", "/api/auth/ok", c
            ),
        )

    table.warm(ours, "signup", f"{API}/signup")
    if theirs:
        table.warm(theirs, "peer_signup", "/api/auth/sign-up/email")
    for c in cfg.concurrency:
        both(
            f"signup c={c}",
            lambda c=c: hashing(
                ours, "signup", "POST /api/v1/auth/signup", "signup", f"{API}/signup", c
            ),
            lambda c=c: hashing(
                theirs,
                "signup",
                "POST /api/auth/sign-up/email",
                "peer_signup",
                "/api/auth/sign-up/email",
                c,
            ),
        )

    our_emails = emails_of(database_url, OURS_EMAILS)
    their_emails = emails_of(peer.database_url, PEER_EMAILS) if theirs else []
    table.warm(ours, "login", f"{API}/login", our_emails)
    if theirs:
        table.warm(theirs, "login", "/api/auth/sign-in/email", their_emails)
    for c in cfg.concurrency:
        both(
            f"login c={c}",
            lambda c=c: hashing(
                ours,
                "login",
                "POST /api/v1/auth/login",
                "login",
                f"{API}/login",
                c,
                items=our_emails,
            ),
            lambda c=c: hashing(
                theirs,
                "login",
                "POST /api/auth/sign-in/email",
                "login",
                "/api/auth/sign-in/email",
                c,
                items=their_emails,
            ),
        )

    # Account enumeration through timing: wrong password and unknown email cost the same.
    c_mid = sorted(cfg.concurrency)[len(cfg.concurrency) // 2]
    progress(f"login failures c={c_mid}")
    hashing(
        ours,
        "login (wrong password)",
        "POST /api/v1/auth/login",
        "login_wrong",
        f"{API}/login",
        c_mid,
        items=our_emails,
        expect_refusal=True,
    )
    hashing(
        ours,
        "login (unknown email)",
        "POST /api/v1/auth/login",
        "login_unknown",
        f"{API}/login",
        c_mid,
        expect_refusal=True,
    )
    # The same comparison in short runs that alternate, so that other work on the machine
    # falls on both alike: the ratio of each adjacent pair.
    timing_pairs = []
    for _ in range(cfg.timing_pairs):
        chunk = max(1.0, cfg.hash_seconds / cfg.timing_pairs)
        wrong = table.measure(
            ours,
            "",
            "",
            "login_wrong",
            f"{API}/login",
            c_mid,
            items=our_emails,
            record=False,
            seconds=chunk,
            expect_refusal=True,
        )
        unknown = table.measure(
            ours,
            "",
            "",
            "login_unknown",
            f"{API}/login",
            c_mid,
            record=False,
            seconds=chunk,
            expect_refusal=True,
        )
        timing_pairs.append(
            {
                "wrong_p50_ms": wrong["p50_ms"],
                "unknown_p50_ms": unknown["p50_ms"],
                "ratio": unknown["p50_ms"] / wrong["p50_ms"] if wrong["p50_ms"] else None,
            }
        )

    for c in cfg.concurrency:
        progress(f"refresh c={c}")
        # Each connection follows its own chain of rotations; spares cover wrk's check request.
        sessions = authsvc_sessions(svc.base, our_emails, 2 * c + 4)
        table.measure(
            ours,
            "refresh",
            "POST /api/v1/auth/refresh",
            "refresh",
            f"{API}/refresh",
            c,
            items=[s["refresh_token"] for s in sessions],
        )

    def me(c: int, record: bool = True) -> dict[str, Any]:
        tokens = [
            s["access_token"] for s in authsvc_sessions(svc.base, our_emails, sessions_for(c))
        ]
        return table.measure(
            ours, "me", "GET /api/v1/auth/me", "bearer", f"{API}/me", c, items=tokens, record=record
        )

    def get_session(c: int, record: bool = True) -> dict[str, Any]:
        cookies = peer_cookies(theirs.base, their_emails, sessions_for(c))
        return table.measure(
            theirs,
            "me",
            "GET /api/auth/get-session",
            "cookie",
            "/api/auth/get-session",
            c,
            items=cookies,
            record=record,
        )

    for c in cfg.concurrency:
        both(f"me c={c}", lambda c=c: me(c), lambda c=c: get_session(c))

    # Run-to-run spread at the top concurrency: each repeat measures both sides' session
    # endpoint and their light endpoint back to back, so each ratio comes from one moment.
    top = max(cfg.concurrency)
    repeats: list[dict[str, Any]] = []
    for i in range(cfg.repeats):
        progress(f"repeat {i + 1}/{cfg.repeats} at c={top}")
        rep: dict[str, Any] = {
            "me": me(top, record=False),
            "healthz": table.measure(
                ours, "healthz", "GET /healthz", "get", "/healthz", top, record=False
            ),
        }
        if theirs:
            rep["get_session"] = get_session(top, record=False)
            rep["ok"] = table.measure(
                theirs, "healthz", "GET /api/auth/ok", "get", "/api/auth/ok", top, record=False
            )
        repeats.append(rep)

    if cfg.ceiling_bookends:
        measure_ceilings()
    for data in ceilings.values():
        rates = [s["rate"] for s in data["samples"]]
        data["rate"] = sum(rates) / len(rates)
        data["per_core"] = data["rate"] / cfg.cores
        data["spread"] = [min(rates), max(rates)]
        cpu_ms = [s["cpu_ms_per_hash"] for s in data["samples"] if "cpu_ms_per_hash" in s]
        data["cpu_ms_per_hash"] = sum(cpu_ms) / len(cpu_ms) if cpu_ms else None
    attach_ceilings(table.rows, ceilings, cfg.cores)
    return {
        "rows": table.rows,
        "ceilings": ceilings,
        "repeats": repeats,
        "timing_pairs": timing_pairs,
        "failure_concurrency": c_mid,
        "top_concurrency": top,
        "stored_hash_prefix": stored.rsplit("$", 2)[0],
    }


def sessions_for(connections: int) -> int:
    """How many users' sessions a session-read row spreads its requests over."""
    return max(4, min(16, connections))


def attach_ceilings(rows: list[dict[str, Any]], ceilings: dict[str, Any], cores: int) -> None:
    """Each row's ceiling: the hash rate (sampled just before the row) of the cores the load
    client left free (signup, login), or the same side's light endpoint at the same
    concurrency (refresh, me). Also `cpu_ratio`, the same reading in CPU time: the ceiling's
    CPU per request over the row's (server and Postgres), which other work on the machine
    does not move."""
    light = {(r["system"], r["concurrency"]): r for r in rows if r["operation"] == "healthz"}
    for r in rows:
        own_cpu = r["server_cpu_ms_per_req"] + r["db_cpu_ms_per_req"]
        r["ceiling"] = r["ceiling_kind"] = r["ratio"] = r["cpu_ratio"] = None
        if r["operation"] == "healthz":
            continue
        if r["operation"].startswith(("signup", "login")):
            s = r.get("hash_sample") or ceilings[r["system"]]
            free = max(cores - r["client_cores"], 0.1)
            r["ceiling"] = s["rate"] / cores * free
            r["ceiling_kind"] = f"hash x {free:.2f} cores"
            hash_cpu = s.get("cpu_ms_per_hash")
            r["cpu_ratio"] = hash_cpu / own_cpu if hash_cpu and own_cpu else None
        else:
            base = light.get((r["system"], r["concurrency"]))
            if base:
                r["ceiling"] = base["rps"]
                r["ceiling_kind"] = "light endpoint"
                base_cpu = base["server_cpu_ms_per_req"] + base["db_cpu_ms_per_req"]
                r["cpu_ratio"] = base_cpu / own_cpu if own_cpu else None
        r["ratio"] = r["rps"] / r["ceiling"] if r.get("ceiling") else None


def repo_sha(repo: Path) -> str:
    """The checkout's commit, for the report."""
    try:
        done = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except OSError:
        return "?"
    return done.stdout.strip() or "?"
