"""Run the service as users run it (gunicorn from the repo root, or `authsvc serve`)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.pgbouncer import service_env

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AUTHSVC_", "DATABASE_URL", "POSTGRES_URL", "AUTH_DATABASE",
                                "SUPABASE_", "JWT_SECRET"))}
    env.update(extra)
    return env


def request(base: str, method: str, path: str, body: Any = None,
            headers: dict[str, str] | None = None, timeout: float = 15) -> tuple[int, dict, dict]:
    """(status, parsed JSON body, headers) of one HTTP call; never raises on 4xx/5xx."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - loopback only
            return resp.status, json.loads(resp.read() or b"{}"), dict(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}"), dict(err.headers)


class Gunicorn:
    """`gunicorn -w N wsgi:app` from the repo root, so gunicorn.conf.py is read."""

    def __init__(self, env: dict[str, str], workers: int = 2) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        # Logs go to a file: a pipe nobody reads would fill up and block the workers.
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in stop()
            mode="w+", prefix="authsvc-gunicorn-", suffix=".log"
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-w", str(workers), "--bind",
             f"127.0.0.1:{self.port}", "wsgi:app"],
            cwd=REPO, env=clean_env(**service_env(env)), stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def logs(self) -> str:
        self.log.flush()
        with open(self.log.name) as fh:
            return fh.read()

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {self.logs()}")
            try:
                status, _, _ = request(self.base, "GET", "/readyz", timeout=2)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError("gunicorn did not become ready")

    def worker_pids(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True,
                             text=True).stdout
        return [int(p) for p in out.split()]

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.logs()
