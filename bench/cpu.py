"""CPU seconds spent by a process tree (from /proc), to say where a request's time goes."""

from __future__ import annotations

import os
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            continue
    return found


def _own_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # utime and stime are fields 14 and 15 of stat(5); fields[0] here is field 3.
    return (int(fields[11]) + int(fields[12])) / TICK


def tree_cpu(pid: int) -> dict[int, float]:
    """CPU seconds of `pid` and every live descendant, by pid."""
    seen: dict[int, float] = {}
    stack = [pid]
    while stack:
        p = stack.pop()
        if p in seen:
            continue
        seen[p] = _own_cpu(p)
        stack.extend(_children(p))
    return seen


def children(pid: int) -> list[int]:
    """The direct children of `pid` (a server's workers)."""
    return _children(pid)


def spent(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds spent between two snapshots by processes alive at the second."""
    return sum(max(0.0, cpu - before.get(pid, 0.0)) for pid, cpu in after.items())


def postmaster_pid(data_dir: Path) -> int | None:
    """The postmaster of the cluster under an embedded data dir, from its postmaster.pid."""
    pointer = data_dir / "pgdata.path"
    pgdata = Path(pointer.read_text().strip()) if pointer.exists() else data_dir / "pgdata"
    try:
        return int((pgdata / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
