"""At most one argon2id hash per core at a time, across the workers of a server.

An argon2id hash at OWASP's minimum walks 19 MiB of memory. Run more of them at once than
there are cores (a gthread worker runs one per busy thread, and every worker does) and they
take turns on the cores, evicting each other's memory from the caches: each then costs more
CPU, and the server does fewer of them a second than the machine can (`python -m bench`
measures both). The gate queues the hashes beyond the cores instead; requests that hash
nothing never wait on it.

Under gunicorn the workers share one gate: a System V semaphore the master makes before it
forks them (`create_shared`, from the server hooks) and removes at exit. The kernel gives a
killed worker's slots back (SEM_UNDO), so a crash never shrinks the gate. Elsewhere (the
development server, tests, the CLI), or where System V semaphores are not available, the
gate is the process's own.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

_IPC_PRIVATE = 0
_IPC_RMID = 0
_SETVAL = 16
_SEM_UNDO = 0x1000


class _Sembuf(ctypes.Structure):
    _fields_ = [
        ("sem_num", ctypes.c_ushort),
        ("sem_op", ctypes.c_short),
        ("sem_flg", ctypes.c_short),
    ]


def cores() -> int:
    """The cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name, use_errno=True)
    except OSError:
        return None


class _LocalSlots:
    """A counting gate for the threads of one process."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._free = slots
        self._cond = threading.Condition()

    def acquire(self, n: int) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._free >= n)
            self._free -= n

    def release(self, n: int) -> None:
        with self._cond:
            self._free += n
            self._cond.notify_all()


class _SharedSlots:
    """A System V semaphore shared by the processes forked after it was made."""

    def __init__(self, libc: ctypes.CDLL, semid: int, slots: int) -> None:
        self._libc = libc
        self.semid = semid
        self.slots = slots

    def _op(self, delta: int) -> None:
        buf = _Sembuf(0, delta, _SEM_UNDO)
        # ctypes lets go of the GIL for the call: the thread waits in the kernel, the rest of
        # the worker runs.
        while self._libc.semop(self.semid, ctypes.byref(buf), 1) != 0:
            err = ctypes.get_errno()
            if err != errno.EINTR:
                raise OSError(err, os.strerror(err))

    def acquire(self, n: int) -> None:
        self._op(-n)

    def release(self, n: int) -> None:
        self._op(n)

    def remove(self) -> None:
        self._libc.semctl(self.semid, 0, _IPC_RMID)


_shared: _SharedSlots | None = None
_shared_owner: int | None = None
_local: _LocalSlots | None = None
_local_lock = threading.Lock()


def create_shared() -> bool:
    """In a server's master, before it forks its workers: one gate for all of them. False
    (and each process keeps its own gate) where System V semaphores cannot be had."""
    global _shared, _shared_owner
    if _shared is not None:
        return True
    libc = _libc()
    slots = cores()
    semid = libc.semget(_IPC_PRIVATE, 1, 0o600) if libc is not None else -1
    if libc is None or semid < 0:
        reason = os.strerror(ctypes.get_errno()) if libc is not None else "no libc"
        log.warning("hash gate: no System V semaphore (%s); each worker gates its own", reason)
        return False
    if libc.semctl(semid, 0, _SETVAL, ctypes.c_int(slots)) != 0:
        libc.semctl(semid, 0, _IPC_RMID)
        return False
    _shared, _shared_owner = _SharedSlots(libc, semid, slots), os.getpid()
    log.info("hash gate: %d hashes at once, shared by the workers", slots)
    return True


def remove_shared() -> None:
    """In the master at exit: the semaphore outlives processes unless it is removed."""
    global _shared, _shared_owner
    if _shared is not None and _shared_owner == os.getpid():
        _shared.remove()
    _shared = _shared_owner = None


def _slots() -> _SharedSlots | _LocalSlots:
    global _local
    if _shared is not None:
        return _shared
    with _local_lock:
        if _local is None:
            _local = _LocalSlots(cores())
        return _local


def describe() -> dict[str, int | str]:
    """What the gate is: shared by the workers or this process's own, and its size."""
    slots = _slots()
    return {"kind": "shared" if slots is _shared else "process", "slots": slots.slots}


@contextmanager
def hashing(parallelism: int = 1) -> Iterator[None]:
    """Hold `parallelism` cores' slots (capped at the gate's size) while the block hashes."""
    global _shared
    slots = _slots()
    n = max(1, min(parallelism, slots.slots))
    try:
        slots.acquire(n)
    except OSError as exc:
        # The semaphore is gone (removed by hand): this process gates its own from now on.
        log.warning("hash gate: the shared semaphore failed (%s); this worker gates its own", exc)
        _shared = None
        slots = _slots()
        slots.acquire(n)
    try:
        yield
    finally:
        try:
            slots.release(n)
        except OSError:
            _shared = None
