"""The periodic purge, in a daemon thread of each serving process.

Every process wakes up now and then and asks the database whether the purge is due; the claim
is atomic, so across workers and instances it runs at most once per AUTHSVC_PURGE_INTERVAL_SECONDS.
Started on a process's first request, so gunicorn's workers each start their own after the fork.
"""

from __future__ import annotations

import logging
import os
import random
import threading
from typing import Any

from authsvc.errors import AuthError
from authsvc.services import maintenance

log = logging.getLogger("authsvc.background")

# How often a process asks whether the purge is due (the interval itself is the setting).
CHECK_EVERY = 300.0


class Purger:
    def __init__(self, stores: Any, settings: Any) -> None:
        self.stores = stores
        self.settings = settings
        self._pid: int | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def ensure_started(self) -> None:
        """Start this process's thread once (a fork gets a thread of its own)."""
        if self.settings.purge_interval <= 0 or self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._stop = threading.Event()
            threading.Thread(target=self._run, name="authsvc-purge", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        delay = random.uniform(5, 60)  # noqa: S311 - spreads the first checks of many workers
        while not self._stop.wait(delay):
            try:
                maintenance.purge_if_due(self.stores, self.settings)
            except AuthError as exc:  # the database is away: try again next time
                log.warning("purge skipped", extra={"error": repr(exc)})
            except Exception:  # noqa: BLE001 - the thread must survive anything
                log.exception("purge failed")
            delay = min(CHECK_EVERY, max(self.settings.purge_interval / 4, 1.0))
