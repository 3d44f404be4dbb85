"""`authsvc serve` with no configuration: the embedded Postgres under AUTHSVC_DATA_DIR."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from authsvc import embedded
from tests.conftest import PASSWORD, latest_migration
from tests.service import clean_env, free_port, raw_exchange, request


@pytest.fixture
def data_dir():
    path = Path(tempfile.mkdtemp(prefix="authsvc-serve-"))
    path.chmod(0o755)
    yield path / "data"
    embedded.stop(path / "data")
    shutil.rmtree(path, ignore_errors=True)


def serve(data_dir: Path, port: int) -> subprocess.Popen:
    exe = shutil.which("authsvc")
    cmd = [exe] if exe else [sys.executable, "-m", "authsvc.cli"]
    return subprocess.Popen(
        [*cmd, "serve", "--port", str(port)],
        env=clean_env(AUTHSVC_DATA_DIR=str(data_dir)),
        cwd=data_dir.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_ready(proc, base, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read()
        try:
            if request(base, "GET", "/readyz", timeout=2)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise TimeoutError


def test_serve_with_no_configuration_starts_and_keeps_its_own_database(data_dir):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = serve(data_dir, port)
    try:
        wait_ready(proc, base)
        status, body, _ = request(
            base,
            "POST",
            "/api/v1/auth/signup",
            {"email": "local@example.com", "password": PASSWORD},
        )
        assert status == 201, body
        status, version, _ = request(base, "GET", "/version")
        assert version["data"]["schema_version"] == latest_migration("auth", "sessions", "app")
        # The same worker as gunicorn.conf.py's: what gunicorn refuses is in the envelope.
        status, headers, body = raw_exchange(port, b"GET /?q=" + b"a" * 5000 + b" HTTP/1.1\r\n\r\n")
        assert status == 414 and json.loads(body)["error"]["code"] == "URI_TOO_LONG"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    # Stopping the service stopped the database it started; the data and the key stay.
    embedded.wait_until_stopped(data_dir)
    assert (data_dir / "pgdata" / "PG_VERSION").exists()
    assert (data_dir / "jwt_secret").exists()
    # A second start finds the same database, with the account in it.
    proc = serve(data_dir, port)
    try:
        wait_ready(proc, base)
        status, body, _ = request(
            base, "POST", "/api/v1/auth/login", {"email": "local@example.com", "password": PASSWORD}
        )
        assert status == 200, body
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert os.stat(data_dir / "embedded.json").st_mode & 0o777 == 0o600


def test_serve_reload_serves_the_development_server(data_dir):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    exe = shutil.which("authsvc")
    cmd = [exe] if exe else [sys.executable, "-m", "authsvc.cli"]
    proc = subprocess.Popen(
        [*cmd, "serve", "--reload", "--port", str(port)],
        env=clean_env(AUTHSVC_DATA_DIR=str(data_dir)),
        cwd=data_dir.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        wait_ready(proc, base)
        status, body, _ = request(base, "GET", "/version")
        assert status == 200 and body["data"]["backend"] == "postgres"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
