"""Real parts for the reliability suite: gunicorn instances, an HTTP client for loopback, a gate
that holds a signup inside a database statement, the real CLI, and raw-SQL views of a layout.

Nothing here patches the service: faults are database objects, signals and stopped servers.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from authsvc import embedded
from tests import pgbouncer
from tests.conftest import CHEAP_ARGON2, PASSWORD, TEST_SECRET, truncate
from tests.pgcluster import PgServer

ROOT = Path(__file__).resolve().parents[2]

# Lines printed at the end of the run (see conftest.pytest_terminal_summary), whatever -s says.
REPORT: list[str] = []

STEPS = ("identity_create", "profile_insert", "profile_verify", "complete")


def report(line: str) -> None:
    REPORT.append(line)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# -- stopping and starting a throwaway cluster ------------------------------------------------


def stop_server(server: PgServer) -> None:
    server.stop_server()


def start_server(server: PgServer) -> None:
    """Start a stopped throwaway cluster again on the port it had, which the running service
    still points at. (PgServer.start_server may pick another port: its free-port probe fails
    while the old port has connections in TIME_WAIT, which Postgres itself binds through.)"""
    assert server.data_dir is not None
    pgdata = server.data_dir / "pgdata"
    if embedded._running_port(pgdata) is not None:
        return
    port = json.loads((server.data_dir / "embedded.json").read_text())["port"]
    embedded._run(
        [str(embedded.find_bin_dir() / "pg_ctl"), "-D", str(pgdata), "-w", "-t", "30",
         "-l", str(pgdata / "server.log"),
         "-o", f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''",
         "start"],
        embedded._run_as(),
    )


# -- HTTP on loopback ------------------------------------------------------------------------


class NoAnswer(Exception):
    """The connection closed without a response (the worker died)."""


@dataclass
class Reply:
    status: int
    body: dict[str, Any]
    elapsed: float

    @property
    def error(self) -> dict[str, Any]:
        return self.body.get("error") or {}

    @property
    def code(self) -> str | None:
        return self.error.get("code")

    @property
    def user_id(self) -> str | None:
        data = self.body.get("data") or {}
        return (data.get("user") or {}).get("id")


def call(
    port: int,
    method: str,
    path: str,
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 60,
) -> Reply:
    """One request on a fresh connection (no keep-alive, so a killed worker only ever takes
    the requests it was serving)."""
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        hdrs = {"Connection": "close", **(headers or {})}
        if payload is not None:
            hdrs["Content-Type"] = "application/json"
        try:
            conn.request(method, path, body=payload, headers=hdrs)
            response = conn.getresponse()
            raw = response.read()
        except (ConnectionError, http.client.RemoteDisconnected, http.client.IncompleteRead) as exc:
            raise NoAnswer(repr(exc)) from exc
        parsed = json.loads(raw) if raw else {}
        return Reply(response.status, parsed, time.monotonic() - started)
    finally:
        conn.close()


def signup(port: int, email: str, password: str = PASSWORD, key: str | None = None,
           timeout: float = 60, **fields: Any) -> Reply:
    headers = {"Idempotency-Key": key} if key else None
    return call(port, "POST", "/api/v1/auth/signup",
                {"email": email, "password": password, **fields}, headers, timeout)


def login(port: int, email: str, password: str = PASSWORD, timeout: float = 60) -> Reply:
    return call(port, "POST", "/api/v1/auth/login", {"email": email, "password": password},
                timeout=timeout)


def unique_email(tag: str = "user") -> str:
    return f"{tag}-{uuid.uuid4().hex[:12]}@example.com"


# -- layouts: one database, or identities and profiles in two --------------------------------


@dataclass
class Layout:
    """Where the tables live. `app_url` holds public.users, `auth_url` auth.users and the
    authsvc schema; in the one-database layout they are the same URL."""

    name: str
    app_url: str
    auth_url: str
    app_server: PgServer | None = None
    auth_server: PgServer | None = None

    @property
    def split(self) -> bool:
        return self.app_url != self.auth_url

    def env(self) -> dict[str, str]:
        return {"DATABASE_URL": self.app_url, "AUTH_DATABASE_URL": self.auth_url}

    def truncate(self) -> None:
        for url in {self.app_url, self.auth_url}:
            truncate(url)

    def servers(self) -> list[PgServer]:
        out: list[PgServer] = []
        for server in (self.app_server, self.auth_server):
            if server is not None and server not in out:
                out.append(server)
        return out

    # raw SQL, never the code under test

    def rows(self, url: str, query: str, params: Any = None) -> list[dict[str, Any]]:
        with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
            return conn.execute(query, params).fetchall()

    def identities(self) -> dict[str, dict[str, Any]]:
        """lower(email) -> {id, signup_state}"""
        return {
            r["email"].lower(): r
            for r in self.rows(self.auth_url, "SELECT id, email, signup_state FROM auth.users")
        }

    def profiles(self) -> dict[uuid.UUID, dict[str, Any]]:
        return {r["id"]: r for r in self.rows(self.app_url, "SELECT id, email FROM public.users")}

    def drift(self) -> dict[str, int]:
        """Orphans counted with plain SQL (across both databases in the split layout)."""
        identities = {r["id"]: r for r in self.identities().values()}
        profiles = self.profiles()
        return {
            "identities_without_profile": sum(1 for i in identities if i not in profiles),
            "profiles_without_identity": sum(1 for p in profiles if p not in identities),
            "pending_identities": sum(
                1 for r in identities.values() if r["signup_state"] != "complete"
            ),
        }

    def trace(self, email: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """(identity, profile) rows of `email`, either may be None."""
        ident = self.rows(self.auth_url, "SELECT id, signup_state FROM auth.users "
                          "WHERE lower(email) = lower(%s)", (email,))
        prof = self.rows(self.app_url, "SELECT id, email FROM public.users "
                         "WHERE lower(email) = lower(%s)"
                         + (" OR id = %s" if ident else ""),
                         (email, ident[0]["id"]) if ident else (email,))
        return (ident[0] if ident else None), (prof[0] if prof else None)

    def active_backends(self, prefix: str) -> list[dict[str, Any]]:
        """The service's backends (on either database) running a statement starting with
        `prefix`."""
        out: list[dict[str, Any]] = []
        for url in {self.app_url, self.auth_url}:
            out.extend(self.rows(
                url,
                "SELECT pid, client_port, current_setting('port')::int AS server_port, query "
                "FROM pg_stat_activity "
                "WHERE application_name = 'authsvc' AND state = 'active' "
                "AND datname = current_database() AND query LIKE %s",
                (prefix + "%",),
            ))
        return out


# -- gunicorn --------------------------------------------------------------------------------


def children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out.extend(int(p) for p in (task / "children").read_text().split())
        except OSError:
            continue
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class Service:
    """`python -m gunicorn -w N wsgi:app` from the project root, on a free loopback port."""

    def __init__(self, layout: Layout, data_dir: Path, workers: int = 2,
                 extra_env: dict[str, str] | None = None, name: str = "") -> None:
        self.layout = layout
        self.data_dir = data_dir
        self.workers_wanted = workers
        self.extra_env = extra_env or {}
        self.name = name or layout.name
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / f"gunicorn-{self.name}.log"

    def env(self) -> dict[str, str]:
        env = {
            k: v for k, v in os.environ.items()
            if not k.startswith(("AUTHSVC_", "SUPABASE_", "GUNICORN_"))
            and k not in ("DATABASE_URL", "AUTH_DATABASE_URL", "POSTGRES_URL", "REDIS_URL",
                          "WEB_CONCURRENCY", "JWT_SECRET_KEY", "PORT", "HOST")
        }
        env.update(pgbouncer.service_env(
            {
                **self.layout.env(),
                "JWT_SECRET_KEY": TEST_SECRET,
                "AUTHSVC_ENV": "development",
                "AUTHSVC_BACKEND": "postgres",
                "AUTHSVC_DATA_DIR": str(self.data_dir),
                "AUTHSVC_RATE_LIMITS": "off",
                **CHEAP_ARGON2,
                **self.extra_env,
            }
        ))
        return env

    def start(self) -> Service:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-w", str(self.workers_wanted), "wsgi:app",
                 "--bind", f"127.0.0.1:{self.port}"],
                cwd=ROOT, env=self.env(), stdout=log, stderr=log, start_new_session=True,
            )
        finally:
            log.close()
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 60) -> None:
        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"gunicorn exited: {self.log_tail()}")
            if len([p for p in children(self.proc.pid) if _alive(p)]) < self.workers_wanted:
                return False
            try:
                return call(self.port, "GET", "/healthz", timeout=5).status == 200
            except (OSError, NoAnswer):
                return False

        wait_for(ready, timeout, f"gunicorn {self.name} to answer", interval=0.1)

    @property
    def master(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def worker_pids(self) -> list[int]:
        return sorted(p for p in children(self.master) if _alive(p))

    def kill_worker(self, pid: int) -> None:
        """SIGKILL one worker and wait until it is dead (not one more instruction of it runs
        after this returns)."""
        assert pid in children(self.master), "not one of our workers"
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not _alive(pid), 30, f"worker {pid} to die")

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=25)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.proc = None

    # convenience
    def call(self, method: str, path: str, **kw: Any) -> Reply:
        return call(self.port, method, path, **kw)

    def call_readyz(self) -> Reply:
        return call(self.port, "GET", "/readyz")

    def signup(self, email: str, **kw: Any) -> Reply:
        return signup(self.port, email, **kw)

    def login(self, email: str, **kw: Any) -> Reply:
        return login(self.port, email, **kw)


def _socket_inodes(pid: int) -> set[int]:
    out: set[int] = set()
    for fd in Path(f"/proc/{pid}/fd").glob("*"):
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(int(target[8:-1]))
    return out


def _tcp_inodes() -> dict[tuple[int, int], int]:
    """(local port, remote port) -> socket inode, for every TCP socket of the machine. (A local
    port alone is ambiguous: Linux reuses an ephemeral port towards another destination.)"""
    out: dict[tuple[int, int], int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            local = int(parts[1].rsplit(":", 1)[1], 16)
            remote = int(parts[2].rsplit(":", 1)[1], 16)
            out[(local, remote)] = int(parts[9])
    return out


def workers_holding(service: Service, held: Iterable[dict[str, Any]]) -> dict[int, int]:
    """worker pid -> how many of the `held` backends (pg_stat_activity rows with client_port
    and server_port) it is connected to."""
    inodes = _tcp_inodes()
    # Behind PgBouncer a backend's client is the pooler: follow it to the service's connection.
    ends = [pgbouncer.client_of(h["server_port"], h["pid"]) or (h["client_port"], h["server_port"])
            for h in held]
    wanted = {inodes[end] for end in ends if end in inodes}
    out: dict[int, int] = {}
    for pid in service.worker_pids():
        n = len(_socket_inodes(pid) & wanted)
        if n:
            out[pid] = n
    return out


# -- a gate: hold statements inside a pg_sleep loop until released ---------------------------

# The statement each saga step runs, as pg_stat_activity shows it.
STEP_STATEMENTS = {
    "identity_create": ("auth", "auth.users", "INSERT", "INSERT INTO auth.users"),
    "profile_insert": ("app", "public.users", "INSERT", "INSERT INTO public.users"),
    "complete": ("auth", "auth.users", "UPDATE", "UPDATE auth.users SET signup_state"),
}


@dataclass
class Gate:
    """A BEFORE trigger that keeps each statement of `event` on `table` in a pg_sleep loop
    while public.authsvc_gate holds a row. Release by deleting the row."""

    layout: Layout
    step: str
    held: list[dict[str, Any]] = field(default_factory=list)

    @property
    def url(self) -> str:
        side = STEP_STATEMENTS[self.step][0]
        return self.layout.app_url if side == "app" else self.layout.auth_url

    @property
    def server(self) -> PgServer | None:
        side = STEP_STATEMENTS[self.step][0]
        return self.layout.app_server if side == "app" else self.layout.auth_server

    def _exec(self, *statements: str) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            for s in statements:
                conn.execute(s)

    def __enter__(self) -> Gate:
        _, table, event, _ = STEP_STATEMENTS[self.step]
        self._exec(
            "CREATE TABLE IF NOT EXISTS public.authsvc_gate (closed boolean)",
            "DELETE FROM public.authsvc_gate",
            "INSERT INTO public.authsvc_gate VALUES (true)",
            "CREATE OR REPLACE FUNCTION public.authsvc_gate_fn() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN "
            "WHILE EXISTS (SELECT 1 FROM public.authsvc_gate) LOOP "
            "PERFORM pg_sleep(0.02); END LOOP; RETURN NEW; END $$",
            f"CREATE TRIGGER authsvc_gate BEFORE {event} ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION public.authsvc_gate_fn()",
        )
        return self

    def wait_held(self, n: int, timeout: float = 30) -> list[dict[str, Any]]:
        prefix = STEP_STATEMENTS[self.step][3]

        def enough() -> list[dict[str, Any]] | None:
            rows = self.layout.active_backends(prefix)
            return rows if len(rows) >= n else None

        self.held = wait_for(enough, timeout, f"{n} signups held at {self.step}")
        return self.held

    def release(self) -> None:
        self._exec("DELETE FROM public.authsvc_gate")

    def __exit__(self, *exc: Any) -> None:
        _, table, _, prefix = STEP_STATEMENTS[self.step]
        self.release()
        # Statements that were held finish (or die with their client) before the trigger goes.
        wait_for(lambda: not self.layout.active_backends(prefix), 30, "held statements to end")
        self._exec(
            f"DROP TRIGGER IF EXISTS authsvc_gate ON {table}",
            "DROP FUNCTION IF EXISTS public.authsvc_gate_fn()",
            "DROP TABLE IF EXISTS public.authsvc_gate",
        )


# -- the real command line -------------------------------------------------------------------


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.stdout.strip().splitlines()[-1])


def cli(layout_env: dict[str, str], *args: str, data_dir: Path,
        extra_env: dict[str, str] | None = None, timeout: float = 180) -> CliResult:
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith(("AUTHSVC_", "SUPABASE_"))
        and k not in ("DATABASE_URL", "AUTH_DATABASE_URL", "POSTGRES_URL")
    }
    env.update(pgbouncer.service_env({
        **layout_env,
        "JWT_SECRET_KEY": TEST_SECRET,
        "AUTHSVC_ENV": "development",
        "AUTHSVC_DATA_DIR": str(data_dir),
        **CHEAP_ARGON2,
        **(extra_env or {}),
    }))
    proc = subprocess.run(
        [sys.executable, "-m", "authsvc.cli", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def reconcile(layout: Layout, *args: str, data_dir: Path, grace: int | None = 0,
              extra_env: dict[str, str] | None = None) -> CliResult:
    env = dict(extra_env or {})
    if grace is not None:
        env["AUTHSVC_RECONCILE_GRACE_SECONDS"] = str(grace)
    return cli(layout.env(), "reconcile", *args, data_dir=data_dir, extra_env=env)
