"""authsvc under gunicorn, the way the Procfile runs it, for the end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import gunicorn

from e2e.helpers import PostgresRows
from tests.conftest import CHEAP_ARGON2, TEST_SECRET
from tests.pgbouncer import service_env as behind_pooler

REPO = Path(__file__).resolve().parent.parent
READY_TIMEOUT = 30.0


class ServiceFailed(RuntimeError):
    """gunicorn exited or never became ready; the message ends with its log."""


@dataclass
class Service:
    """A running gunicorn: where it listens, its database, its log."""

    base_url: str
    database_url: str
    log_path: Path
    process: subprocess.Popen

    @property
    def rows(self) -> PostgresRows:
        """The service's tables, for the helpers in e2e.helpers."""
        return PostgresRows(self.database_url)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text().splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """gunicorn's graceful shutdown (SIGTERM); SIGKILL to the group if it hangs."""
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def is_ready(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(base_url + "/readyz", timeout=2) as response:  # noqa: S310
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def service_env(database_url: str, data_dir: Path) -> dict[str, str]:
    """This process's environment without any authsvc setting, plus the test ones."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AUTHSVC_", "SUPABASE_"))
        and k not in ("DATABASE_URL", "POSTGRES_URL", "AUTH_DATABASE_URL", "REDIS_URL")
    }
    env.update(
        DATABASE_URL=database_url,
        JWT_SECRET_KEY=TEST_SECRET,
        AUTHSVC_ENV="development",
        AUTHSVC_BACKEND="postgres",
        AUTHSVC_DATA_DIR=str(data_dir),
        AUTHSVC_RATE_LIMITS="off",
        WEB_CONCURRENCY="2",
        PYTHONUNBUFFERED="1",
        **CHEAP_ARGON2,
    )
    return behind_pooler(env)


def start(database_url: str, data_dir: Path, log_path: Path) -> Service:
    """`python -m gunicorn -w 2 wsgi:app` from the repository root (so gunicorn.conf.py is
    read) on a free loopback port; returns once /readyz answers 200."""
    port = free_port()
    command = [sys.executable, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}"]
    if gunicorn.version_info >= (27,):
        command.append("--no-control-socket")  # not ~/.gunicorn/gunicorn.ctl, shared by all
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603
            [*command, "wsgi:app"],
            cwd=REPO,
            env=service_env(database_url, data_dir),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    service = Service(f"http://127.0.0.1:{port}", database_url, log_path, process)
    deadline = time.monotonic() + READY_TIMEOUT
    while not is_ready(service.base_url):
        if process.poll() is not None:
            raise ServiceFailed(f"gunicorn exited with {process.returncode}:\n"
                                f"{service.log_tail()}")
        if time.monotonic() > deadline:
            service.stop()
            raise ServiceFailed(f"gunicorn not ready after {READY_TIMEOUT:.0f}s:\n"
                                f"{service.log_tail()}")
        time.sleep(0.1)
    return service
