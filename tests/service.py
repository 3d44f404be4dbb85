"""The service as users run it, for every test that needs a real server (tests/, the reliability
suite, e2e/, bench/): `python -m gunicorn -w N wsgi:app` from the repository root, so
gunicorn.conf.py is read, on a free loopback port, its output in a log file; and an HTTP client
for loopback.

Nothing here patches the service: it is started, signalled and stopped like any deployment.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import gunicorn

from tests import pgbouncer
from tests.conftest import CHEAP_ARGON2, PASSWORD, TEST_SECRET

REPO = Path(__file__).resolve().parent.parent

# The caller's settings that must not reach a service under test.
_FOREIGN_PREFIXES = (
    "AUTHSVC_",
    "SUPABASE_",
    "GUNICORN_",
    "DATABASE_URL",
    "AUTH_DATABASE",
    "POSTGRES_URL",
    "JWT_SECRET",
)
_FOREIGN_NAMES = ("REDIS_URL", "WEB_CONCURRENCY", "PORT", "HOST")


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any setting of the service (or of gunicorn), plus
    `extra`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(_FOREIGN_PREFIXES) and k not in _FOREIGN_NAMES
    }
    env.update(extra)
    return env


def service_env(data_dir: Path | str, **settings: str) -> dict[str, str]:
    """A service under test's settings: development, the Postgres backend, the test signing key,
    no rate limits, cheap hashing, its data in `data_dir`; `settings` (DATABASE_URL, ...) last."""
    return {
        "JWT_SECRET_KEY": TEST_SECRET,
        "AUTHSVC_ENV": "development",
        "AUTHSVC_BACKEND": "postgres",
        "AUTHSVC_DATA_DIR": str(data_dir),
        "AUTHSVC_RATE_LIMITS": "off",
        **CHEAP_ARGON2,
        **settings,
    }


def wait_for(
    predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05
) -> Any:
    """The first truthy value of `predicate()`; an AssertionError naming `what` after
    `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# -- HTTP on loopback ------------------------------------------------------------------------


class NoAnswer(ConnectionError):
    """The connection was refused or closed without a response (a worker died)."""


@dataclass
class Reply:
    """One response: status, parsed JSON body, seconds it took, headers (any case)."""

    status: int
    body: dict[str, Any]
    elapsed: float
    headers: Any = None  # http.client.HTTPMessage

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
        return Reply(response.status, parsed, time.monotonic() - started, response.headers)
    finally:
        conn.close()


def raw_exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send `request` as it is, read the answer to the end of the connection: (status,
    headers by lower-case name, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {
        name.strip().lower(): value.strip()
        for name, value in (line.split(":", 1) for line in lines[1:])
    }
    return int(lines[0].split()[1]), headers, body


def request(
    base: str,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 15,
) -> tuple[int, dict, Any]:
    """(status, parsed JSON body, headers) of one call to `base` (http://127.0.0.1:port);
    never raises on 4xx/5xx."""
    reply = call(urlsplit(base).port or 80, method, path, body, headers, timeout)
    return reply.status, reply.body, reply.headers


def signup(
    port: int,
    email: str,
    password: str = PASSWORD,
    key: str | None = None,
    timeout: float = 60,
    **fields: Any,
) -> Reply:
    """POST /api/v1/auth/signup, with an Idempotency-Key when `key` is given."""
    headers = {"Idempotency-Key": key} if key else None
    return call(
        port,
        "POST",
        "/api/v1/auth/signup",
        {"email": email, "password": password, **fields},
        headers,
        timeout,
    )


def login(port: int, email: str, password: str = PASSWORD, timeout: float = 60) -> Reply:
    """POST /api/v1/auth/login."""
    return call(
        port, "POST", "/api/v1/auth/login", {"email": email, "password": password}, timeout=timeout
    )


# -- processes and their sockets, from /proc ---------------------------------------------------


def children(pid: int) -> list[int]:
    """The child processes of `pid` (zombies included)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out.extend(int(p) for p in (task / "children").read_text().split())
        except OSError:
            continue
    return out


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


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


# -- gunicorn ----------------------------------------------------------------------------------


class ServiceFailed(RuntimeError):
    """gunicorn exited or never became ready; the message ends with its log."""


class Gunicorn:
    """`python -m gunicorn -w N wsgi:app` from the repository root, started at once on a free
    loopback port with `env` over a clean environment (see service_env for the usual settings;
    its databases behind PgBouncer under AUTHSVC_TEST_POOLER=pgbouncer). Its output goes to
    `log_path` (appended to), or to a temporary file removed by stop()."""

    def __init__(
        self,
        env: dict[str, str],
        workers: int = 2,
        log_path: Path | None = None,
        name: str = "gunicorn",
    ) -> None:
        self.env = clean_env(**{"PYTHONUNBUFFERED": "1", **pgbouncer.route(env)})
        self.workers = workers
        self.name = name
        self._temporary_log = log_path is None
        if log_path is None:
            fd, path = tempfile.mkstemp(prefix="authsvc-gunicorn-", suffix=".log")
            os.close(fd)
            log_path = Path(path)
        self.log_path = log_path
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._launch()

    @classmethod
    def in_production(cls, database_url: str, data_dir: Path) -> Gunicorn:
        """Started on `database_url` as production runs it (AUTHSVC_ENV=production, OWASP's
        argon2id cost), logging to `data_dir`/gunicorn.log."""
        env = service_env(
            data_dir,
            DATABASE_URL=database_url,
            AUTHSVC_ENV="production",
            AUTHSVC_ARGON2_TIME_COST="2",
            AUTHSVC_ARGON2_MEMORY_KIB="19456",
        )
        return cls.started(env, log_path=data_dir / "gunicorn.log")

    @classmethod
    def started(cls, env: dict[str, str], timeout: float = 60, **kwargs: Any) -> Gunicorn:
        """A Gunicorn that answers; stopped again (and ServiceFailed) if it never does."""
        service = cls(env, **kwargs)
        try:
            return service.wait_ready(timeout)
        except ServiceFailed:
            service.stop()
            raise

    def _launch(self) -> None:
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "-w",
            str(self.workers),
            "--bind",
            f"127.0.0.1:{self.port}",
        ]
        if gunicorn.version_info >= (27,):
            command.append("--no-control-socket")  # not ~/.gunicorn/gunicorn.ctl, shared by all
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(  # noqa: S603
                [*command, "wsgi:app"],
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def base(self) -> str:
        """Where it answers: http://127.0.0.1:<port>."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def master(self) -> int:
        """The master's pid."""
        assert self.proc is not None, f"{self.name} is not running"
        return self.proc.pid

    @property
    def running(self) -> bool:
        """The master has not exited."""
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout: float = 60) -> Gunicorn:
        """Until the master runs all its workers and /readyz answers 200."""

        def ready() -> bool:
            if not self.running:
                raise ServiceFailed(f"{self.name} exited:\n{self.log_tail()}")
            if len(self.worker_pids()) < self.workers:
                return False
            try:
                return call(self.port, "GET", "/readyz", timeout=5).status == 200
            except OSError:
                return False

        try:
            wait_for(ready, timeout, f"{self.name} to answer", interval=0.1)
        except AssertionError as exc:
            raise ServiceFailed(f"{exc}:\n{self.log_tail()}") from None
        return self

    def worker_pids(self) -> list[int]:
        """The master's live workers."""
        return sorted(p for p in children(self.master) if alive(p))

    def kill_worker(self, pid: int) -> None:
        """SIGKILL one worker and wait until it is dead (not one more instruction of it runs
        after this returns)."""
        assert pid in children(self.master), "not one of our workers"
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not alive(pid), 30, f"worker {pid} to die")

    def holders(self, connections: Iterable[tuple[int, int]]) -> dict[int, int]:
        """worker pid -> how many of `connections` it holds open; a connection is the (local
        port, remote port) pair of a TCP socket as the worker sees it."""
        inodes = _tcp_inodes()
        wanted = {inodes[c] for c in connections if c in inodes}
        out: dict[int, int] = {}
        for pid in self.worker_pids():
            n = len(_socket_inodes(pid) & wanted)
            if n:
                out[pid] = n
        return out

    def worker_serving(self, client_port: int) -> int | None:
        """The worker holding the HTTP connection that the client opened from `client_port`."""
        owners = self.holders([(self.port, client_port)])
        assert len(owners) <= 1, owners
        return next(iter(owners), None)

    def logs(self) -> str:
        """Everything gunicorn and the service wrote so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        """The last `lines` lines of the log, for failure messages."""
        return "\n".join(self.logs().splitlines()[-lines:]) or "(no log)"

    def stop(self) -> str:
        """gunicorn's graceful shutdown (SIGTERM), SIGKILL to the group if it hangs; returns
        the log."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=25)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.proc = None
        text = self.logs()
        if self._temporary_log:
            self.log_path.unlink(missing_ok=True)
        return text

    def restart(self, timeout: float = 60) -> Gunicorn:
        """Stopped (if it runs) and started again on the same port; returns once ready."""
        if self.proc is not None:
            self.stop()
        self._launch()
        return self.wait_ready(timeout)

    # -- requests ----------------------------------------------------------------------------

    def call(self, method: str, path: str, **kw: Any) -> Reply:
        """One request to this service (see call())."""
        return call(self.port, method, path, **kw)

    def call_readyz(self) -> Reply:
        """GET /readyz."""
        return call(self.port, "GET", "/readyz")

    def signup(self, email: str, **kw: Any) -> Reply:
        """A signup on this service (see signup())."""
        return signup(self.port, email, **kw)

    def login(self, email: str, **kw: Any) -> Reply:
        """A login on this service (see login())."""
        return login(self.port, email, **kw)
