"""What the bench starts and stops: a throwaway Postgres, authsvc under gunicorn, the peer."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from authsvc import embedded

REPO = Path(__file__).resolve().parent.parent
PEER_DIR = Path(__file__).resolve().parent / "peer"


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(
    base: str,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30,
) -> tuple[int, Any, Any]:
    """(status, parsed JSON body, headers) of one call; never raises on 4xx/5xx."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        base + path,
        data=data,
        method=method,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - loopback only
            return resp.status, json.loads(resp.read() or b"{}"), resp.headers
    except urllib.error.HTTPError as err:
        raw = err.read()
        try:
            parsed = json.loads(raw or b"{}")
        except ValueError:
            parsed = {"raw": raw[:500].decode(errors="replace")}
        return err.code, parsed, err.headers


def wait_http(base: str, path: str, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    """Until `path` answers 200, or the process exits (its log in the error)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited: {log.read_text()[-3000:]}")
        try:
            if http(base, "GET", path, timeout=2)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{base}{path} did not answer 200 within {timeout:.0f} s")


def trim_log(path: Path, head: int = 1 << 20, tail: int = 4 << 20) -> None:
    """Cut a log to its first and last bytes: one JSON line a request adds up to gigabytes."""
    size = path.stat().st_size if path.exists() else 0
    if size <= head + tail:
        return
    with open(path, "rb") as fh:
        first = fh.read(head)
        fh.seek(size - tail)
        last = fh.read()
    marker = f"\n... {size - head - tail} bytes cut by the bench ...\n".encode()
    path.write_bytes(first + marker + last)


def stop_process(proc: subprocess.Popen, timeout: float = 20) -> None:
    """SIGTERM, then SIGKILL after `timeout`."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Postgres:
    """A throwaway cluster (the project's embedded Postgres in a temporary directory)."""

    def __init__(self) -> None:
        # The cluster's system user must reach the directory (mkdtemp makes it 0700).
        self.data_dir = Path(tempfile.mkdtemp(prefix="authsvc-bench-pg-"))
        self.data_dir.chmod(0o755)
        cluster = embedded.ensure_running(self.data_dir)
        self.admin_url = make_conninfo(cluster.url, dbname="postgres")

    def url(self, dbname: str) -> str:
        """A URL for `dbname` on this server."""
        p = conninfo_to_dict(self.admin_url)
        return (
            f"postgresql://{p['user']}:{p['password']}@{p.get('host', '127.0.0.1')}:"
            f"{p.get('port', 5432)}/{dbname}"
        )

    def create_database(self, prefix: str) -> str:
        """A fresh, empty database; its URL."""
        name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        """Stop the cluster and remove its files."""
        embedded.stop(self.data_dir)
        pointer = self.data_dir / "pgdata.path"
        if pointer.exists():
            shutil.rmtree(Path(pointer.read_text().strip()).parent, ignore_errors=True)
        shutil.rmtree(self.data_dir, ignore_errors=True)


def service_env(
    database_url: str, auth_database_url: str | None = None, **extra: str
) -> dict[str, str]:
    """The environment of a production start with rate limits off, and nothing else of ours."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(
            (
                "AUTHSVC_",
                "DATABASE_",
                "POSTGRES_URL",
                "AUTH_DATABASE",
                "SUPABASE_",
                "JWT_SECRET",
                "REDIS_URL",
                "WEB_CONCURRENCY",
                "GUNICORN_",
            )
        )
    }
    env.update(
        {
            "DATABASE_URL": database_url,
            "AUTHSVC_ENV": "production",
            "JWT_SECRET_KEY": secrets.token_hex(32),
            "AUTHSVC_RATE_LIMITS": "off",
            "AUTHSVC_DATA_DIR": tempfile.gettempdir(),
        }
    )
    if auth_database_url:
        env["AUTH_DATABASE_URL"] = auth_database_url
    env.update(extra)
    return env


def authsvc_cli(
    env: dict[str, str], *args: str, timeout: float = 600
) -> subprocess.CompletedProcess:
    """`authsvc ARGS` as an operator runs it (the installed package's CLI)."""
    return subprocess.run(  # noqa: S603
        [sys.executable, "-m", "authsvc", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def migrate(env: dict[str, str]) -> None:
    """`authsvc migrate`, or RuntimeError with its output."""
    done = authsvc_cli(env, "migrate", timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"authsvc migrate failed: {done.stdout}{done.stderr}")


class Authsvc:
    """`python -m gunicorn -w 2 wsgi:app` from the repo root (gunicorn.conf.py is read); `app`
    and `ready` serve another WSGI app the same way (bench/floor_app.py)."""

    def __init__(
        self,
        env: dict[str, str],
        log: Path,
        workers: int = 2,
        app: str = "wsgi:app",
        ready: str = "/readyz",
    ) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        self._log = open(log, "a")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(  # noqa: S603
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-w",
                str(workers),
                "--bind",
                f"127.0.0.1:{self.port}",
                app,
            ],
            cwd=REPO,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        wait_http(self.base, ready, self.proc, log, timeout=60)

    def stop(self) -> None:
        """Stop gunicorn and its workers; keep the head and tail of its log."""
        stop_process(self.proc)
        self._log.close()
        trim_log(self.log)


class PeerUnavailable(RuntimeError):
    """The peer cannot run here (no node/npm, or its install failed); the message says why."""


def install_peer(log: Path) -> None:
    """`npm install` of the peer's package.json into bench/peer/node_modules (git-ignored)."""
    if not shutil.which("node") or not shutil.which("npm"):
        raise PeerUnavailable("node and npm are not installed")
    if (PEER_DIR / "node_modules" / "better-auth").exists() and (
        PEER_DIR / "node_modules" / "pg"
    ).exists():
        return
    with open(log, "a") as out:
        done = subprocess.run(  # noqa: S603
            [
                shutil.which("npm"),
                "install",
                "--no-package-lock",
                "--no-audit",
                "--no-fund",
                "--omit=dev",
            ],
            cwd=PEER_DIR,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=600,
        )
    if done.returncode != 0:
        raise PeerUnavailable(f"npm install failed (exit {done.returncode}; see {log})")


def _peer_env(database_url: str, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "BETTER_AUTH"))}
    env.update(
        {
            "DATABASE_URL": database_url,
            "BETTER_AUTH_SECRET": secrets.token_hex(32),
            "BETTER_AUTH_URL": f"http://127.0.0.1:{port}",
            "NODE_ENV": "production",
            "WORKERS": "2",
        }
    )
    return env


def peer_node(args: list[str], env: dict[str, str], timeout: float = 120) -> str:
    """`node bench/peer/server.mjs ARGS`; its stdout, or RuntimeError."""
    done = subprocess.run(  # noqa: S603
        [shutil.which("node") or "node", "server.mjs", *args],
        cwd=PEER_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise RuntimeError(f"node server.mjs {' '.join(args)} failed: {done.stderr[-2000:]}")
    return done.stdout


class Peer:
    """Better Auth on its own database of the same Postgres, two worker processes."""

    def __init__(self, database_url: str, log: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.database_url = database_url
        env = _peer_env(database_url, self.port)
        peer_node(["migrate"], env)
        self._log = open(log, "a")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(  # noqa: S603
            [shutil.which("node") or "node", "server.mjs", "serve", str(self.port)],
            cwd=PEER_DIR,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        wait_http(self.base, "/api/auth/ok", self.proc, log, timeout=60)

    def stop(self) -> None:
        """Stop the primary, which stops its workers."""
        stop_process(self.proc)
        self._log.close()


def peer_hash_rate(seconds: float, parallel: int) -> dict[str, Any]:
    """Better Auth's own password hash (scrypt) rate with `parallel` hashes in flight."""
    out = peer_node(
        ["hashrate", str(seconds), str(parallel)], dict(os.environ), timeout=seconds + 60
    )
    return json.loads(out.strip().splitlines()[-1])
