"""gunicorn's server hooks, shared by gunicorn.conf.py (`gunicorn wsgi:app`) and `authsvc serve`."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from http import HTTPStatus
from typing import Any

from gunicorn import util
from gunicorn.http import errors as http
from gunicorn.workers.gthread import ThreadWorker

from authsvc import errors, hashgate
from authsvc.errors import AuthError, envelope_error
from authsvc.observability import access_log, request_id_from

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
    # One hash gate for every worker (authsvc/hashgate.py): they share the machine's cores.
    hashgate.create_shared()


def child_exit(server: Any, worker: Any) -> None:
    # A dead worker's live gauges (its pools) go; its counters stay in the sums.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    hashgate.remove_shared()
    if _metrics_dir_made:
        shutil.rmtree(_metrics_dir_made, ignore_errors=True)


def post_worker_init(worker: Any) -> None:
    # The app was loaded in this worker (no --preload); open the pools here, after the fork,
    # so no connection or pool thread is ever shared between processes.
    runtime = getattr(_app(worker), "extensions", {}).get("authsvc")
    if runtime is not None:
        runtime.stores.open()


def worker_exit(server: Any, worker: Any) -> None:
    runtime = getattr(_app(worker), "extensions", {}).get("authsvc")
    if runtime is not None:
        runtime.stores.close()


def _app(worker: Any) -> Any:
    """The Flask app a worker serves (our Worker wraps it, see Worker.load_wsgi)."""
    wsgi = getattr(worker, "wsgi", None)
    return getattr(wsgi, "app", wsgi)


# -- the worker ---------------------------------------------------------------------------------

# gunicorn.conf.py and `authsvc serve` both run this worker class.
WORKER_CLASS = "authsvc.serving.Worker"


class _BodyReads:
    """The request body as the app reads it, counting what was read (WSGI's wsgi.input)."""

    def __init__(self, stream: Any, length: int | None, chunked: bool) -> None:
        self._stream = stream
        self._length = length  # None: no Content-Length, a chunked body (or none at all)
        self._read = 0
        self._ended = length is None and not chunked  # no body at all

    @property
    def finished(self) -> bool:
        """Nothing of the body is left on the connection."""
        return self._ended or (self._length is not None and self._read >= self._length)

    def _count(self, data: bytes, size: int | None) -> bytes:
        self._read += len(data)
        if not data and size != 0:
            self._ended = True
        return data

    def read(self, size: int | None = None) -> bytes:
        return self._count(self._refused(self._stream.read, size), size)

    def readline(self, size: int | None = None) -> bytes:
        return self._count(self._refused(self._stream.readline, size), size)

    def readlines(self, hint: int | None = None) -> list[bytes]:
        lines = self._refused(self._stream.readlines, hint)
        self._read += sum(map(len, lines))
        self._ended = True
        return lines

    def __iter__(self):
        return iter(self.readline, b"")

    @staticmethod
    def _refused(read: Any, size: int | None) -> Any:
        """gunicorn parses a chunked body while the app reads it: a malformed chunk is the
        client's error (400 in the envelope, refusal()), not the app's."""
        try:
            return read(size)
        except Exception as exc:
            err = refusal(exc)
            if err is None:
                raise
            raise err from exc


class HonestKeepAlive:
    """WSGI middleware: a response to a request whose body was not read to its end says
    `Connection: close`, and the connection is closed after it.

    gunicorn decides between keep-alive and close from the request and the response's framing
    alone, announces it, and only after the response drains what the app left of the body,
    giving up past 64 KiB or 5 seconds (gthread's _keepalive_after, parser.finish_body). When
    it gives up it closes the connection its answer promised to keep: a 413 for a large body
    said keep-alive, and the client's next request on it died. Draining an arbitrary body is
    itself the cost the limit exists to refuse, so here the promise is not made: the response
    asks gunicorn to close (Response.force_close(), which it honours before the headers go
    out), and gunicorn's graceful close (FIN, then a bounded read) lets the client read it.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        length = environ.get("CONTENT_LENGTH", "")
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        body = _BodyReads(environ["wsgi.input"], int(length) if length.isdigit() else None, chunked)
        environ["wsgi.input"] = body

        def start(status: str, headers: list, exc_info: Any = None) -> Any:
            if not body.finished:
                close = getattr(getattr(start_response, "__self__", None), "force_close", None)
                if close is not None:
                    close()
            return start_response(status, headers, exc_info)

        return self.app(environ, start)


# gunicorn 27's gthread turns accepting on and off through this method; older ones do not.
_GATED_ACCEPT = hasattr(ThreadWorker, "set_accept_enabled")
# How long a worker whose threads are all busy leaves new connections to the others.
ACCEPT_HOLD = 0.05


class Worker(ThreadWorker):
    """gunicorn's gthread worker, with HonestKeepAlive around the app, the requests gunicorn
    refuses itself answered in the envelope, and new connections left to a worker with a
    thread free.

    The workers share one listening socket, and gthread accepts in its main loop whenever the
    socket is readable. A worker already running wins that race against one asleep in
    epoll_wait, so the connections a client opens at once could all land on one worker: with
    32 keep-alive connections, a third of the runs of GET /me put every one of them on one
    worker, which served them on one core at 40% of the throughput while the other idled.
    Here a worker whose threads have all become busy stops accepting for up to ACCEPT_HOLD,
    or until a thread is free, so a new connection goes to a worker that can serve it now.
    When every worker stays busy (keep-alive clients can keep them so), each takes new
    connections again on its loop's first turn after ACCEPT_HOLD (a completed request wakes
    it, or gthread's one-second tick), not only once the others let go. gunicorn before 27
    has no set_accept_enabled; there this does nothing.
    """

    busy = 0  # connections handed to the threads and not yet back (main thread only)
    _full_since = 0.0  # when the last thread became busy

    def enqueue_req(self, conn: Any) -> None:
        super().enqueue_req(conn)  # its completion runs finish_request on this thread, later
        self.busy += 1
        if self.busy == self.cfg.threads and _GATED_ACCEPT:
            self._full_since = time.monotonic()
            self.set_accept_enabled(False)

    def finish_request(self, *args: Any) -> None:
        self.busy -= 1
        super().finish_request(*args)

    def set_accept_enabled(self, enabled: bool) -> None:
        # While it is not accepting, gthread's loop asks for this on every turn (each request
        # that completes wakes it), so accepting resumes once a thread is free or the hold ends.
        holding = self.busy >= self.cfg.threads
        if enabled and holding and time.monotonic() - self._full_since < ACCEPT_HOLD:
            enabled = False
        super().set_accept_enabled(enabled)

    def load_wsgi(self) -> None:
        super().load_wsgi()
        self.wsgi = HonestKeepAlive(self.wsgi)

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        """A request gunicorn refused before the app ran (gunicorn.http.errors), answered in the
        envelope instead of gunicorn's HTML page; anything else as gunicorn does."""
        err = refusal(exc)
        if err is None:
            return super().handle_error(req, client, addr, exc)
        req = req or getattr(exc, "req", None)
        headers = dict(getattr(req, "headers", None) or [])
        request_id = request_id_from(headers.get("X-REQUEST-ID"))
        access_log.info(
            "%s %s %s",
            getattr(req, "method", None) or "-",
            getattr(req, "path", None) or "-",
            err.status,
            extra={
                "request_id": request_id,
                "method": getattr(req, "method", None),
                "path": getattr(req, "path", None),
                "status": err.status,
                "error_code": err.code,
                "reason": type(exc).__name__,
                "remote_addr": (addr or ("",))[0] or None,
            },
        )
        body = json.dumps(envelope_error(err, request_id)).encode()
        head = (
            f"HTTP/1.1 {err.status} {HTTPStatus(err.status).phrase}\r\n"
            f"Date: {util.http_date()}\r\n"
            "Connection: close\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"X-Request-ID: {request_id}\r\n\r\n"
        )
        try:
            util.write_nonblock(client, head.encode("latin-1") + body)
        except Exception:  # noqa: BLE001 - the client may be gone; gunicorn does the same
            self.log.debug("Failed to send error message.")
        return None


def refusal(exc: BaseException) -> AuthError | None:
    """The answer to a request gunicorn's parser refused, or None for what is not a client's
    malformed request (a response header the app got wrong, a misconfiguration, TLS)."""
    if not isinstance(exc, http.ParseException) or isinstance(
        exc, (http.InvalidResponseHeader, http.InvalidResponseHeaderName, http.ConfigurationProblem)
    ):
        return None
    if isinstance(exc, http.LimitRequestLine):
        return errors.UriTooLong()
    if isinstance(exc, http.LimitRequestHeaders):
        return errors.HeadersTooLarge()
    if isinstance(exc, http.ExpectationFailed):
        return errors.ExpectationFailed()
    if isinstance(exc, http.UnsupportedTransferCoding):
        return errors.NotImplementedHere()
    if isinstance(exc, http.ForbiddenProxyRequest):
        return errors.Forbidden("This address may not send PROXY protocol headers.")
    # InvalidHeader -> invalid_header, InvalidHTTPVersion -> invalid_http_version
    reason = re.sub(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", type(exc).__name__)
    reason = reason.lower()
    return errors.BadRequest(
        "The request is not valid HTTP/1.1; details.reason says what is wrong with it.",
        {"reason": reason},
    )
