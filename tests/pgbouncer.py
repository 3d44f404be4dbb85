"""Debian's PgBouncer in transaction mode in front of a test Postgres, as users deploy it.

`PgBouncer.start(url)` runs /usr/sbin/pgbouncer (installed by `scripts/install.sh --test`) on a
free loopback port, in front of the server `url` names, in transaction mode with the one
relaxation the project documents (`ignore_startup_parameters = extra_float_digits`) and nothing
else: `options` refused, no `max_prepared_statements` (Debian 12's 1.18 has none). It also sets
the README's `query_wait_timeout` and `server_login_retry`: how fast an outage is answered and
over, not what the pooler accepts.

With `AUTHSVC_TEST_POOLER=pgbouncer` in the environment, `route()` hands the service under test
every database through a PgBouncer (one per Postgres server of the session, started on first
use, its admin user the server's) and the direct URLs as `DATABASE_DIRECT_URL` /
`AUTH_DATABASE_DIRECT_URL`, with `AUTHSVC_DB_POOLER=transaction`. The harness calls it wherever
it gives the service its configuration (tests/conftest.py's app_overrides and migrate_with,
tests/service.py's Gunicorn, the CLI runners, the stores built without an app), so the whole
suite, tests/ and e2e/, runs behind the pooler. Raw-SQL assertions and faults keep using the
direct URLs.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from authsvc import embedded
from authsvc.config import Settings
from tests.pgcluster import server_of

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
SWITCH = "AUTHSVC_TEST_POOLER"

CONFIG = """\
[databases]
* = host={host} port={port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {listen_port}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = {dir}/userlist.txt
admin_users = {admin}
pool_mode = transaction
ignore_startup_parameters = extra_float_digits
logfile = {dir}/pgbouncer.log
pidfile = {dir}/pgbouncer.pid
; operations, not compatibility (README, "Behind a connection pooler"): a query waits at most
; 3 s for a server connection (the default 120 s holds requests that long in an outage), a
; failed server login is retried after 1 s (the default 15 s refuses every client for that long
; after the database is back), and the reliability suite keeps several services open at once
query_wait_timeout = 3
server_login_retry = 1
max_client_conn = 1000
"""


def enabled() -> bool:
    """True when the suite runs the service behind PgBouncer (AUTHSVC_TEST_POOLER=pgbouncer)."""
    return os.environ.get(SWITCH, "").strip().lower() == "pgbouncer"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _write_userlist(workdir: Path, users: dict[str, str]) -> None:
    path = workdir / "userlist.txt"
    path.write_text("".join(f'"{user}" "{password}"\n' for user, password in users.items()))
    path.chmod(0o644)  # the pooler may run as another user; a throwaway cluster's password


@dataclass
class PgBouncer:
    """One pgbouncer process in front of one Postgres server."""

    host: str
    port: int  # the Postgres server's
    listen_port: int
    dir: Path
    proc: subprocess.Popen[bytes]
    admin: tuple[str, str]  # (user, password) allowed on the admin console
    users: dict[str, str]  # the auth file: user -> password

    @classmethod
    def start(cls, url: str) -> PgBouncer:
        """PgBouncer in front of the server of `url`, whose user becomes its admin."""
        params = conninfo_to_dict(url)
        host, port = params.get("host", "127.0.0.1"), int(params.get("port", 5432))
        admin = (params["user"], params.get("password", ""))
        workdir = Path(tempfile.mkdtemp(prefix="authsvc-pgbouncer-"))
        workdir.chmod(0o755)
        listen_port = _free_port()
        (workdir / "pgbouncer.ini").write_text(
            CONFIG.format(
                host=host, port=port, listen_port=listen_port, dir=workdir, admin=admin[0]
            )
        )
        users = {admin[0]: admin[1]}
        _write_userlist(workdir, users)
        # pgbouncer refuses to run as root: run it as the embedded cluster's system user.
        runas = embedded._run_as()
        kwargs: dict[str, Any] = {}
        if runas is not None:
            for path in (workdir, *workdir.iterdir()):
                os.chown(path, runas.pw_uid, runas.pw_gid)
            kwargs = {"user": runas.pw_uid, "group": runas.pw_gid, "extra_groups": []}
        with open(workdir / "stderr.log", "ab") as log:
            proc = subprocess.Popen(
                [PGBOUNCER, str(workdir / "pgbouncer.ini")],
                stdout=log,
                stderr=log,
                cwd="/",
                start_new_session=True,
                **kwargs,
            )
        bouncer = cls(host, port, listen_port, workdir, proc, admin, users)
        deadline = time.monotonic() + 15
        while not _answers("127.0.0.1", listen_port):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = bouncer.log_tail()
                bouncer.stop()
                raise RuntimeError(f"pgbouncer did not start: {tail}")
            time.sleep(0.05)
        return bouncer

    def url(self, direct: str) -> str:
        """`direct` (a URL or key=value string of this bouncer's server) with host and port of
        the pooler, in the same form (a test of how the service shows a form still sees it)."""
        params = conninfo_to_dict(direct)
        user, password = params["user"], params.get("password", "")
        if self.users.get(user) != password:
            self.users[user] = password
            _write_userlist(self.dir, self.users)
            self.console("RELOAD")
        if "://" not in direct:
            return make_conninfo(direct, host="127.0.0.1", port=str(self.listen_port))
        parts = urlsplit(direct)
        userinfo, at, _ = parts.netloc.rpartition("@")
        return urlunsplit(parts._replace(netloc=f"{userinfo}{at}127.0.0.1:{self.listen_port}"))

    def console(self, command: str) -> list[dict[str, Any]]:
        """A command on PgBouncer's admin console (SHOW SERVERS, RELOAD, ...), as dicts."""
        user, password = self.admin
        with psycopg.connect(
            host="127.0.0.1",
            port=self.listen_port,
            dbname="pgbouncer",
            user=user,
            password=password,
            autocommit=True,
        ) as conn:
            # The console speaks only the simple query protocol: no parameters.
            cur = conn.execute(command)
            if cur.description is None:
                return []
            names = [c.name for c in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def client_of(self, backend_pid: int) -> tuple[int, int] | None:
        """(client port, pooler port) of the client connection a server backend is serving."""
        links = {
            s["link"]
            for s in self.console("SHOW SERVERS")
            if s["remote_pid"] == backend_pid and s["link"]
        }
        for client in self.console("SHOW CLIENTS"):
            if client["ptr"] in links:
                return int(client["port"]), self.listen_port
        return None

    def log_tail(self, n: int = 4000) -> str:
        out = ""
        for name in ("pgbouncer.log", "stderr.log"):
            try:
                out += (self.dir / name).read_text(errors="replace")[-n:]
            except OSError:
                pass
        return out

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # immediate shutdown
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


# -- one PgBouncer per Postgres server, for the whole test session ------------------------------

_running: dict[tuple[str, int], PgBouncer] = {}
_lock = threading.Lock()


def bouncer_for(url: str) -> PgBouncer:
    """The session's PgBouncer in front of the server of `url` (started on first use). Its
    admin is the server's admin user when the server is one of the session's (whatever role
    `url` names), else `url`'s own user."""
    params = conninfo_to_dict(url)
    key = (params.get("host", "127.0.0.1"), int(params.get("port", 5432)))
    server = server_of(url)
    admin_url = server.admin_url if server is not None else make_conninfo(url, dbname="postgres")
    with _lock:
        bouncer = _running.get(key)
        if bouncer is None or bouncer.proc.poll() is not None:
            bouncer = _running[key] = PgBouncer.start(admin_url)
        return bouncer


_timeouts_set: set[tuple[str, int, str]] = set()


def pooled(url: str) -> str:
    """`url` through its server's PgBouncer. The first time, its database gets the service's
    statement timeout as a server-side setting, as the README tells users to do (through a
    transaction-mode pooler the service cannot send it at connect time); the pooler's admin, the
    server's admin user, sets it (the service's role may not)."""
    bouncer = bouncer_for(url)
    dbname = conninfo_to_dict(url)["dbname"]
    key = (bouncer.host, bouncer.port, dbname)
    if key not in _timeouts_set:
        user, password = bouncer.admin
        with psycopg.connect(
            host=bouncer.host,
            port=bouncer.port,
            dbname=dbname,
            user=user,
            password=password,
            autocommit=True,
        ) as conn:
            conn.execute(
                sql.SQL("ALTER DATABASE {} SET statement_timeout = {}").format(
                    sql.Identifier(dbname), sql.Literal(f"{Settings.statement_timeout_ms}ms")
                )
            )
        _timeouts_set.add(key)
    return bouncer.url(url)


def client_of(server_port: int, backend_pid: int) -> tuple[int, int] | None:
    """(client port, pooler port) of the service connection a backend of the server on
    `server_port` is serving through a PgBouncer, or None (not through one, or idle)."""
    for (_, port), bouncer in list(_running.items()):
        if port == server_port:
            return bouncer.client_of(backend_pid)
    return None


def stop_all() -> None:
    with _lock:
        for bouncer in _running.values():
            bouncer.stop()
        _running.clear()


atexit.register(stop_all)

DIRECT = {"DATABASE_URL": "DATABASE_DIRECT_URL", "AUTH_DATABASE_URL": "AUTH_DATABASE_DIRECT_URL"}


def through_pgbouncer(env: Mapping[str, Any]) -> dict[str, Any]:
    """`env` with its database URLs through PgBouncer and the direct ones as *_DIRECT_URL.

    Only URLs of the session's own Postgres servers that answer now are routed: one that comes
    with its direct URL already, or points elsewhere (a closed port for a test of an unreachable
    database, a proxy, a PgBouncer already), is left alone.
    """
    out = dict(env)
    for var, direct_var in DIRECT.items():
        url = out.get(var)
        if not url or out.get(direct_var):
            continue  # none, or already split into a pooled and a direct URL
        if server_of(url) is None:
            continue  # not one of the session's servers
        params = conninfo_to_dict(url)
        if not _answers(params.get("host", "127.0.0.1"), int(params.get("port", 5432))):
            continue  # a stopped server: the test is about its absence
        out[direct_var] = url
        out[var] = pooled(url)
        out.setdefault("AUTHSVC_DB_POOLER", "transaction")
    return out


def route(env: Mapping[str, Any]) -> dict[str, Any]:
    """The configuration the service under test gets: `env`, behind PgBouncer when the suite
    runs with AUTHSVC_TEST_POOLER=pgbouncer, unchanged otherwise."""
    return through_pgbouncer(env) if enabled() else dict(env)
