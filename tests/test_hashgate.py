"""The hash gate: no more argon2id hashes at once than cores, across a server's workers."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from authsvc import hashgate
from authsvc.passwords import Hasher
from tests.service import Gunicorn


def _semaphore_sets() -> set[int]:
    path = Path("/proc/sysvipc/sem")
    if not path.exists():
        pytest.skip("no /proc/sysvipc/sem here")
    return {int(line.split()[1]) for line in path.read_text().splitlines()[1:] if line.strip()}


class _Peak:
    """How many holders were inside at once, at most (shared with forked processes)."""

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("fork")
        self.inside = ctx.Value("i", 0)
        self.peak = ctx.Value("i", 0)

    def hold(self, seconds: float) -> None:
        with hashgate.hashing():
            with self.inside.get_lock():
                self.inside.value += 1
                self.peak.value = max(self.peak.value, self.inside.value)
            time.sleep(seconds)
            with self.inside.get_lock():
                self.inside.value -= 1


def _threads(peak: _Peak, n: int, seconds: float) -> None:
    threads = [threading.Thread(target=peak.hold, args=(seconds,)) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


@pytest.fixture
def shared_gate():
    if not hashgate.create_shared():
        pytest.skip("System V semaphores are not available here")
    yield hashgate.describe()
    hashgate.remove_shared()


def test_a_process_hashes_no_more_at_once_than_it_has_cores():
    slots = hashgate.cores()
    peak = _Peak()
    _threads(peak, 3 * slots, 0.05)
    assert peak.peak.value == slots
    # A real hash goes through the same gate, and still answers.
    hasher = Hasher(1, 8, 1)
    assert hasher.verify(hasher.hash("tall-river-quiet-lamp-42"), "tall-river-quiet-lamp-42")


def test_the_workers_of_a_server_share_one_gate(shared_gate):
    slots = shared_gate["slots"]
    assert shared_gate["kind"] == "shared"
    peak = _Peak()
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_threads, args=(peak, 2 * slots, 0.05)) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(30)
        assert w.exitcode == 0
    # Four times as many holders as slots, in two processes: never more than the slots inside.
    assert peak.peak.value == slots


def _hold_every_slot_then_wait(slots: int, held) -> None:
    hashgate._slots().acquire(slots)
    held.set()
    time.sleep(60)


def test_a_worker_killed_while_hashing_gives_its_slots_back(shared_gate):
    slots = shared_gate["slots"]
    ctx = multiprocessing.get_context("fork")
    held = ctx.Event()
    victim = ctx.Process(target=_hold_every_slot_then_wait, args=(slots, held))
    victim.start()
    assert held.wait(10)

    got = threading.Event()

    def take_every_slot() -> None:
        hashgate._slots().acquire(slots)
        got.set()
        hashgate._slots().release(slots)

    taker = threading.Thread(target=take_every_slot, daemon=True)
    taker.start()
    assert not got.wait(0.3), "the gate let a hash in while every slot was held"
    os.kill(victim.pid, signal.SIGKILL)
    victim.join(10)
    # The kernel undoes a dead process's hold (SEM_UNDO): the gate is whole again.
    assert got.wait(10), "the killed worker's slots were never given back"


def test_gunicorn_makes_one_gate_for_its_workers_and_removes_it_at_exit(database_url, tmp_path):
    before = _semaphore_sets()
    service = Gunicorn.in_production(database_url, tmp_path)
    try:
        assert len(service.worker_pids()) == 2
        assert len(_semaphore_sets() - before) == 1
    finally:
        service.stop()
    assert _semaphore_sets() - before == set()
