"""Sending mail off the request path: a queue and one sender thread per process.

A request hands over a job (a function that composes the Mail: it may read storage and issue a
token) and answers at once, so a slow or failing mail server never slows or fails the request,
and a request whose job finds nothing to send (an unknown address) takes the same time as one
that sends. Every failure is logged and counted, and retried with a growing pause
(`AUTHSVC_MAIL_ATTEMPTS`, `AUTHSVC_MAIL_RETRY_MS`) unless it cannot help (a 5xx answer, no
SMTP_URL); a message given up on is logged as an error and counted as `failed`. A job still queued
when its process dies is lost: the person asks for the link again.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from authsvc.errors import AuthError
from authsvc.mail import Mail, Mailer, MailError

log = logging.getLogger("authsvc.mail")

Compose = Callable[[], Mail | None]
Observer = Callable[[str, str], None]  # (kind, outcome)

SENT, RETRY, FAILED, NOTHING = "sent", "retry", "failed", "nothing_to_send"
MAX_QUEUED = 10000


@dataclass(frozen=True)
class _Job:
    kind: str
    compose: Compose


class MailQueue:
    """Jobs in, mail out, on a daemon thread started in each process that submits."""

    def __init__(self, mailer: Mailer, sender: str, attempts: int = 4, pause: float = 2.0) -> None:
        self.mailer = mailer
        self.sender = sender
        self.attempts = attempts
        self.pause = pause
        self.counts: Counter[tuple[str, str]] = Counter()
        self.observers: list[Observer] = []
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._queue: queue.Queue[_Job | None] = queue.Queue(MAX_QUEUED)
        self._thread: threading.Thread | None = None

    def submit(self, kind: str, compose: Compose) -> None:
        """Queue a job; never raises (a full queue is reported like any undelivered mail)."""
        if not getattr(self.mailer, "delivers", True):
            # No mail can go out (production without SMTP_URL): make no link nobody gets.
            log.warning("mail not sent: SMTP_URL is not set", extra={"kind": kind})
            self._count(kind, FAILED)
            return
        self._ensure_thread()
        try:
            self._queue.put_nowait(_Job(kind, compose))
        except queue.Full:
            log.error("mail queue full: message dropped", extra={"kind": kind})
            self._count(kind, FAILED)

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until every queued job is done; False on time-out."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Finish what is queued (up to `timeout`), then stop the thread."""
        with self._lock:
            thread = self._thread if self._pid == os.getpid() else None
            if thread is None:
                return
            self.drain(timeout)
            self._queue.put(None)
            self._thread = None
        thread.join(timeout)

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._pid == os.getpid():
            return
        with self._lock:
            if self._pid != os.getpid():  # a fork: the parent's queue and thread are not ours
                self._queue = queue.Queue(MAX_QUEUED)
                self._pid = os.getpid()
                self._thread = None
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="authsvc-mail", daemon=True)
                self._thread.start()

    def _count(self, kind: str, outcome: str) -> None:
        self.counts[(kind, outcome)] += 1
        for observe in self.observers:
            try:
                observe(kind, outcome)
            except Exception:  # noqa: BLE001 - counting must never stop the sender
                log.exception("mail observer failed")

    def _run(self) -> None:
        q = self._queue
        while True:
            job = q.get()
            try:
                if job is None:
                    return
                self._process(job)
            except Exception:  # noqa: BLE001 - one bad job must not stop the sender
                log.exception("mail job failed unexpectedly", extra={"kind": job and job.kind})
                if job is not None:
                    self._count(job.kind, FAILED)
            finally:
                q.task_done()

    def _process(self, job: _Job) -> None:
        mail: Mail | None = None
        for attempt in range(1, self.attempts + 1):
            try:
                mail = job.compose()
                break
            except AuthError as exc:
                if exc.status < 500 or attempt == self.attempts:
                    log.error(
                        "mail not sent: composing it failed",
                        extra={"kind": job.kind, "error": repr(exc), "attempts": attempt},
                    )
                    self._count(job.kind, FAILED)
                    return
                self._retry(job.kind, attempt, repr(exc))
        if mail is None:
            self._count(job.kind, NOTHING)
            return
        message = mail.message(self.sender)
        for attempt in range(1, self.attempts + 1):
            try:
                self.mailer.send(message)
            except MailError as exc:
                if exc.permanent or attempt == self.attempts:
                    log.error(
                        "mail not delivered; giving up",
                        extra={
                            "kind": job.kind,
                            "user_id": str(mail.user_id) if mail.user_id else None,
                            "mailer": self.mailer.description,
                            "error": exc.reason,
                            "attempts": attempt,
                        },
                    )
                    self._count(job.kind, FAILED)
                    return
                self._retry(job.kind, attempt, exc.reason)
                continue
            log.info(
                "mail sent",
                extra={
                    "kind": job.kind,
                    "user_id": str(mail.user_id) if mail.user_id else None,
                    "attempts": attempt,
                },
            )
            self._count(job.kind, SENT)
            return

    def _retry(self, kind: str, attempt: int, error: str) -> None:
        pause = self.pause * 2 ** (attempt - 1)
        log.warning(
            "mail attempt failed; retrying",
            extra={"kind": kind, "error": error, "attempt": attempt, "retry_in": pause},
        )
        self._count(kind, RETRY)
        time.sleep(pause)
