"""Real parts for the reliability suite: a gate that holds a signup inside a database statement,
the real CLI, raw-SQL views of a layout, and which worker holds which database connection. The
service itself runs under tests/service.py's Gunicorn.

Nothing here patches the service: faults are database objects, signals and stopped servers.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from authsvc import embedded
from tests import pgbouncer
from tests.conftest import truncate
from tests.pgcluster import PgServer
from tests.service import Gunicorn, clean_env, service_env, wait_for

ROOT = Path(__file__).resolve().parents[2]

# Lines printed at the end of the run (see conftest.pytest_terminal_summary), whatever -s says.
REPORT: list[str] = []

STEPS = ("identity_create", "profile_insert", "profile_verify", "complete")


def report(line: str) -> None:
    REPORT.append(line)


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
    embedded.start_server(embedded.find_bin_dir(), pgdata, port, embedded._run_as())


def unique_email(tag: str = "user") -> str:
    return f"{tag}-{uuid.uuid4().hex[:12]}@example.com"


# -- layouts: one database, or identities and profiles in two --------------------------------


@dataclass
class Layout:
    """Where the tables live. `app_url` holds public.users, `auth_url` auth.users and the
    authsvc schema; in the one-database layout they are the same URL. Those two are the
    owner's, for faults and raw SQL; the service (and its command line) connects with the
    service role's URLs of the same databases."""

    name: str
    app_url: str
    auth_url: str
    service_app_url: str
    service_auth_url: str
    app_server: PgServer | None = None
    auth_server: PgServer | None = None

    @property
    def split(self) -> bool:
        return self.app_url != self.auth_url

    def env(self) -> dict[str, str]:
        """The service's database settings."""
        return {"DATABASE_URL": self.service_app_url, "AUTH_DATABASE_URL": self.service_auth_url}

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
        ident = self.rows(
            self.auth_url,
            "SELECT id, signup_state FROM auth.users WHERE lower(email) = lower(%s)",
            (email,),
        )
        prof = self.rows(
            self.app_url,
            "SELECT id, email FROM public.users "
            "WHERE lower(email) = lower(%s)" + (" OR id = %s" if ident else ""),
            (email, ident[0]["id"]) if ident else (email,),
        )
        return (ident[0] if ident else None), (prof[0] if prof else None)

    def active_backends(self, prefix: str) -> list[dict[str, Any]]:
        """The service's backends (on either database) running a statement starting with
        `prefix`."""
        out: list[dict[str, Any]] = []
        for url in {self.app_url, self.auth_url}:
            out.extend(
                self.rows(
                    url,
                    "SELECT pid, client_port, current_setting('port')::int AS server_port, query "
                    "FROM pg_stat_activity "
                    "WHERE application_name = 'authsvc' AND state = 'active' "
                    "AND datname = current_database() AND query LIKE %s",
                    (prefix + "%",),
                )
            )
        return out


def workers_holding(service: Gunicorn, held: Iterable[dict[str, Any]]) -> dict[int, int]:
    """worker pid -> how many of the `held` backends (pg_stat_activity rows with pid,
    client_port and server_port) it is connected to."""
    # Behind PgBouncer a backend's client is the pooler: follow it to the service's connection.
    return service.holders(
        pgbouncer.client_of(h["server_port"], h["pid"]) or (h["client_port"], h["server_port"])
        for h in held
    )


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
            # The trigger runs as the service's role, which must see the gate.
            "GRANT SELECT ON public.authsvc_gate TO PUBLIC",
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


def cli(
    layout_env: dict[str, str],
    *args: str,
    data_dir: Path,
    extra_env: dict[str, str] | None = None,
    timeout: float = 180,
) -> CliResult:
    """`authsvc <args>` as a subprocess with the layout's settings (behind PgBouncer under
    AUTHSVC_TEST_POOLER=pgbouncer)."""
    settings = service_env(data_dir, **{**layout_env, **(extra_env or {})})
    env = clean_env(**pgbouncer.route(settings))
    proc = subprocess.run(
        [sys.executable, "-m", "authsvc.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def reconcile(
    layout: Layout,
    *args: str,
    data_dir: Path,
    grace: int | None = 0,
    extra_env: dict[str, str] | None = None,
) -> CliResult:
    env = dict(extra_env or {})
    if grace is not None:
        env["AUTHSVC_RECONCILE_GRACE_SECONDS"] = str(grace)
    return cli(layout.env(), "reconcile", *args, data_dir=data_dir, extra_env=env)
