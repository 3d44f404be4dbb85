"""Debian's redis-server for the tests (and benchmarks): a throwaway one on a free loopback port."""

from __future__ import annotations

import shutil
import subprocess
import time

from tests.service import free_port


def redis_server_missing() -> str | None:
    """Why no redis-server can be started here, or None when one can."""
    if shutil.which("redis-server") is None:
        return (
            "redis-server is not installed (Debian: apt-get install redis-server; "
            "scripts/install.sh --test installs it)"
        )
    return None


class RedisServer:
    """`redis-server` without persistence on 127.0.0.1; stop() and start() keep the port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        """Start it (again, on the same port) and wait until it answers PING."""
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not self.answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.05)

    def answers(self) -> bool:
        """It answers PING."""
        import redis

        try:
            return bool(redis.Redis.from_url(self.url, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def flush(self) -> None:
        """Forget every key."""
        import redis

        redis.Redis.from_url(self.url).flushall()

    def stop(self) -> None:
        """Terminate it (its data is gone: there is no persistence)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None
