"""gunicorn reads this from the working directory, so a bare `gunicorn wsgi:app` gets it too."""

import os

from authsvc.observability import GUNICORN_LOGCONFIG

# The server hooks (gunicorn picks them up by name): pools opened after the fork and closed at
# exit, metrics shared across workers. `authsvc serve` sets the same ones.
from authsvc.serving import (  # noqa: F401
    WORKER_CLASS,
    child_exit,
    on_exit,
    on_starting,
    post_worker_init,
    worker_exit,
)

workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# gthread, answering honestly about keep-alive (authsvc/serving.py).
worker_class = WORKER_CLASS
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
timeout = 30
graceful_timeout = 20
keepalive = 5
# Our JSON access log line carries the request id; gunicorn's own would repeat it.
accesslog = None
logger_class = "authsvc.observability.GunicornLogger"
errorlog = "-"
# Every line on stderr is JSON, gunicorn's own included.
logconfig_dict = GUNICORN_LOGCONFIG
# gunicorn >= 25.1 opens a control socket at one fixed path per user; two instances on one
# machine would fight over it. Older versions ignore this setting.
control_socket_disable = True
