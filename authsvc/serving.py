"""gunicorn's server hooks, shared by gunicorn.conf.py (`gunicorn wsgi:app`) and `authsvc serve`."""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

HOOKS = ("on_starting", "child_exit", "on_exit", "post_worker_init", "worker_exit")

# Metrics (AUTHSVC_METRICS=on): each worker is a process, so prometheus_client's multiprocess
# mode keeps every worker's numbers in files in one directory and /metrics on any worker reads
# them all. The directory is the operator's PROMETHEUS_MULTIPROC_DIR, or one of our own.
_metrics_dir_made: str | None = None


def on_starting(server: Any) -> None:
    # In the master, before any worker is forked: workers inherit the variable. Start empty,
    # or the files of an earlier run would be added to this one's numbers.
    global _metrics_dir_made
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        os.makedirs(path, exist_ok=True)
        for name in os.listdir(path):
            if name.endswith(".db"):
                os.remove(os.path.join(path, name))
    else:
        _metrics_dir_made = tempfile.mkdtemp(prefix=f"authsvc-metrics-{os.getpid()}-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir_made


def child_exit(server: Any, worker: Any) -> None:
    # A dead worker's live gauges (its pools) go; its counters stay in the sums.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    if _metrics_dir_made:
        shutil.rmtree(_metrics_dir_made, ignore_errors=True)


def post_worker_init(worker: Any) -> None:
    # The app was loaded in this worker (no --preload); open the pools here, after the fork,
    # so no connection or pool thread is ever shared between processes.
    runtime = worker.wsgi.extensions.get("authsvc") if hasattr(worker.wsgi, "extensions") else None
    if runtime is not None:
        runtime.stores.open()


def worker_exit(server: Any, worker: Any) -> None:
    runtime = getattr(getattr(worker, "wsgi", None), "extensions", {}).get("authsvc")
    if runtime is not None:
        runtime.stores.close()
