"""gunicorn reads this from the working directory, so a bare `gunicorn wsgi:app` gets it too."""

import os

from authsvc.observability import GUNICORN_LOGCONFIG

workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
timeout = 30
graceful_timeout = 20
keepalive = 5
# Our JSON access log line carries the request id; gunicorn's own would repeat it.
accesslog = None
errorlog = "-"
# Every line on stderr is JSON, gunicorn's own included.
logconfig_dict = GUNICORN_LOGCONFIG
# gunicorn >= 25.1 opens a control socket at one fixed path per user; two instances on one
# machine would fight over it. Older versions ignore this setting.
control_socket_disable = True


def post_worker_init(worker):
    # The app was loaded in this worker (no --preload); open the pools here, after the fork,
    # so no connection or pool thread is ever shared between processes.
    runtime = worker.wsgi.extensions.get("authsvc") if hasattr(worker.wsgi, "extensions") else None
    if runtime is not None:
        runtime.stores.open()


def worker_exit(server, worker):
    runtime = getattr(getattr(worker, "wsgi", None), "extensions", {}).get("authsvc")
    if runtime is not None:
        runtime.stores.close()
