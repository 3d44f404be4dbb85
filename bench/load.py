"""The load client: wrk with bench/load.lua, and the CPU it spent, measured from its rusage."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

LUA = Path(__file__).resolve().parent / "load.lua"


class LoadClientMissing(RuntimeError):
    """wrk is not installed."""


@dataclass
class LoadResult:
    """One wrk run: what it sent, how fast, how slow, what failed, and what it cost itself."""

    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    error_kinds: dict[str, int] = field(default_factory=dict)
    client_cpu_s: float = 0.0
    client_cores: float = 0.0

    def as_dict(self) -> dict:
        """Plain data for the JSON report."""
        return asdict(self)


def wrk_path() -> str:
    """The wrk binary, or LoadClientMissing with what to install."""
    found = shutil.which("wrk")
    if not found:
        raise LoadClientMissing(
            "wrk is not installed: `apt-get install wrk` (or `bash scripts/install.sh --bench`)"
        )
    return found


def run(
    base: str,
    mode: str,
    path: str,
    connections: int,
    seconds: float,
    *,
    items: list[str] | None = None,
    password: str = "",
    tag: str = "x",
) -> LoadResult:
    """Drive `base + path` with `connections` keep-alive connections for `seconds`."""
    threads = 1 if connections < 4 else 2
    with tempfile.TemporaryDirectory(prefix="authsvc-bench-wrk-") as tmp:
        item_file = ""
        if items is not None:
            item_file = os.path.join(tmp, "items.txt")
            Path(item_file).write_text("\n".join(items) + "\n")
        out_path = os.path.join(tmp, "out.txt")
        args = [
            wrk_path(),
            "-t",
            str(threads),
            "-c",
            str(connections),
            "-d",
            f"{max(1, round(seconds))}s",
            "--timeout",
            "30s",
            "-s",
            str(LUA),
            base + path,
            "--",
            f"mode={mode}",
            f"path={path}",
            f"tag={tag}",
            f"password={password}",
            f"file={item_file}",
            f"threads={threads}",
        ]
        with open(out_path, "w") as out:
            started = time.perf_counter()
            proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
            # wait4 gives the child's own rusage: the CPU the load client spent.
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            wall = time.perf_counter() - started
        text = Path(out_path).read_text()
    line = next((ln for ln in text.splitlines() if ln.startswith("BENCHJSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {text[-2000:]}")
    raw = json.loads(line.removeprefix("BENCHJSON "))
    seconds_run = raw["duration_us"] / 1e6
    kinds = {k: raw[k] for k in ("connect", "read", "write", "status", "timeout") if raw[k]}
    cpu = usage.ru_utime + usage.ru_stime
    return LoadResult(
        requests=raw["requests"],
        seconds=round(seconds_run, 3),
        rps=raw["requests"] / seconds_run if seconds_run else 0.0,
        p50_ms=raw["p50_us"] / 1000,
        p95_ms=raw["p95_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
        errors=sum(kinds.values()),
        error_kinds=kinds,
        client_cpu_s=round(cpu, 3),
        client_cores=round(cpu / wall, 3) if wall else 0.0,
    )
