"""The hash ceiling: how many argon2id hashes all cores do a second, at a stored hash's cost."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor

from argon2 import Type, extract_parameters
from argon2.low_level import hash_secret_raw


def argon2_parameters(stored_hash: str) -> dict[str, int | str]:
    """The cost a stored PHC string was made with (what the service really uses)."""
    p = extract_parameters(stored_hash)
    return {
        "type": p.type.name.lower(),
        "version": p.version,
        "time_cost": p.time_cost,
        "memory_kib": p.memory_cost,
        "parallelism": p.parallelism,
        "hash_len": p.hash_len,
        "salt_len": p.salt_len,
    }


def _lane(
    params: dict, start_at: float, stop_at: float, threads: int = 1
) -> tuple[int, float, float]:
    """Hash in `threads` threads of this process from `start_at` to `stop_at` (argon2-cffi lets
    go of the GIL while it hashes, so the threads hash at once, as a server's threads do)."""
    while time.time() < start_at:
        time.sleep(0.001)
    started = time.perf_counter()
    cpu_started = time.process_time()
    counts = [0] * threads

    def hash_until_stop(i: int) -> None:
        while time.time() < stop_at:
            hash_secret_raw(
                b"tall-river-quiet-lamp-42",
                os.urandom(int(params["salt_len"])),
                time_cost=int(params["time_cost"]),
                memory_cost=int(params["memory_kib"]),
                parallelism=int(params["parallelism"]),
                hash_len=int(params["hash_len"]),
                type=Type.ID,
            )
            counts[i] += 1

    others = [threading.Thread(target=hash_until_stop, args=(i,)) for i in range(1, threads)]
    for t in others:
        t.start()
    hash_until_stop(0)
    for t in others:
        t.join()
    return sum(counts), time.perf_counter() - started, time.process_time() - cpu_started


def argon2_rate(
    params: dict, seconds: float, processes: int | None = None, threads: int = 1
) -> dict[str, float]:
    """Hashes a second with one process per core hashing for `seconds`, started together;
    with `threads` > 1, that many hashes at once in each process (more hashes than cores)."""
    processes = processes or os.cpu_count() or 1
    with ProcessPoolExecutor(max_workers=processes) as pool:
        start_at = time.time() + 0.3  # every process forked and waiting
        futures = [
            pool.submit(_lane, params, start_at, start_at + seconds, threads)
            for _ in range(processes)
        ]
        lanes = [f.result() for f in futures]
    rate = sum(done / elapsed for done, elapsed, _ in lanes if elapsed > 0)
    hashes = sum(done for done, _, _ in lanes)
    return {
        "processes": processes,
        "threads": threads,
        "hashes": hashes,
        "rate": rate,
        "per_core": rate / processes,
        # CPU time, unlike the rate, does not count what other work on the machine took.
        "cpu_ms_per_hash": 1000 * sum(c for _, _, c in lanes) / max(hashes, 1),
    }
