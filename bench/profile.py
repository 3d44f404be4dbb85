"""`--profile`: where a worker's time goes on each endpoint, sampled by py-spy under load.

Runs after the table (the profiler costs CPU, so these runs are not rows), writes py-spy's
collapsed stacks next to the logs (for flame graphs: speedscope or flamegraph.pl read them) and
keeps the frames of authsvc and its libraries that hold the most samples.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import load
from bench.table import API, OURS_EMAILS, PASSWORD, authsvc_sessions, emails_of

INTERESTING = (
    "authsvc/",
    "psycopg",
    "argon2",
    "flask_jwt_extended",
    "jwt/",
    "marshmallow",
    "logging/",
    "json/",
    "uuid",
)
FRAME = re.compile(r"^(?P<name>.*?) \((?P<file>.*?)(?::\d+)?\)$")


def summarize(raw: Path, top: int = 12) -> list[tuple[str, float]]:
    """(frame, share of samples it appears in) for the busiest interesting frames."""
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue  # a line py-spy had not finished writing
        n = int(count)
        total += n
        names = set()
        for frame in stack.split(";"):
            m = FRAME.match(frame)
            if not m or not any(k in m["file"] for k in INTERESTING):
                continue
            file = m["file"].split("site-packages/")[-1].split("/authsvc/", 1)
            file = "authsvc/" + file[1] if len(file) == 2 else file[0]
            names.add(f"{m['name']} ({file})")
        for name in names:
            inclusive[name] += n
    return [(name, n / total) for name, n in inclusive.most_common(top)] if total else []


def _settled(path: Path, timeout: float = 10) -> None:
    """Until py-spy's output file stops growing (it can land after the process exits)."""
    deadline = time.monotonic() + timeout
    last = -1
    while time.monotonic() < deadline:
        size = path.stat().st_size if path.exists() else -1
        if size > 0 and size == last:
            return
        last = size
        time.sleep(1)


def run_profiles(
    base: str,
    master_pid: int,
    database_url: str,
    connections: int,
    seconds: float,
    out_dir: Path,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """Profile signup, login, refresh and /me at `connections`, one run each."""
    spy = shutil.which("py-spy")
    if not spy:
        return {"error": "py-spy is not installed (pip install py-spy)"}
    emails = emails_of(database_url, OURS_EMAILS)
    result: dict[str, Any] = {"connections": connections}
    for op in ("signup", "login", "refresh", "me"):
        progress(f"profile {op} c={connections}")
        items: list[str] | None = None
        mode, path = op, f"{API}/{op}"
        if op == "login":
            items = emails
        elif op == "refresh":
            items = [
                s["refresh_token"] for s in authsvc_sessions(base, emails, 2 * connections + 4)
            ]
        elif op == "me":
            mode = "bearer"
            items = [s["access_token"] for s in authsvc_sessions(base, emails, 16)]
        raw = out_dir / f"profile-{op}.txt"
        sampler = subprocess.Popen(  # noqa: S603
            [
                spy,
                "record",
                "--pid",
                str(master_pid),
                "--subprocesses",
                "--format",
                "raw",
                "--rate",
                "200",
                "--duration",
                str(int(seconds)),
                "--nonblocking",
                "--output",
                str(raw),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        loaded = load.run(
            base,
            mode,
            path,
            connections,
            seconds,
            items=items,
            password=PASSWORD,
            tag=f"profile{op}",
        )
        sampler.wait(timeout=seconds + 60)
        _settled(raw)
        result[op] = {
            "rps_while_sampled": loaded.rps,
            "stacks": str(raw),
            "top": summarize(raw) if raw.exists() else [],
        }
    return result


def lines(profiles: dict[str, Any]) -> list[str]:
    """The profile section of the table."""
    if "error" in profiles:
        return [f"profile: {profiles['error']}"]
    out = [
        f"profile (py-spy samples of both workers' busy threads, waits on Postgres included, "
        f"at c={profiles['connections']}; share of samples with the frame on the stack):"
    ]
    for op in ("signup", "login", "refresh", "me"):
        p = profiles.get(op)
        if not p:
            continue
        out.append(f"  {op} ({p['rps_while_sampled']:.0f} req/s while sampled; {p['stacks']})")
        out.extend(f"    {100 * share:5.1f}%  {name}" for name, share in p["top"])
    return out
