"""X-Request-ID in and out, JSON log lines, one access-log line per request."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import traceback
import uuid
from datetime import UTC, datetime
from typing import Any

from gunicorn import glogging

_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
# Never written to a log line, whatever a caller passes in `extra`.
_SECRET_KEYS = re.compile(r"pass|secret|token|authorization|cookie|key|hash", re.I)
_STANDARD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

# Row values that a database error carries: Postgres's DETAIL line ("Key (email)=(...)",
# "Failing row contains (...)"), and PostgREST's `details`, which forwards the same text. A
# value may hold a newline: a key's value runs to the words Postgres puts after it when they
# follow, else to the end of the line.
_KEY = r"(Key \((?:[^()\n]|\([^()\n]*\))*\)=\()"
_ROW_VALUES = [
    (
        re.compile(r"""(["']details["']\s*:\s*)(?:"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')"""),
        r"\1'<redacted>'",
    ),
    (
        re.compile(
            _KEY + r".*?(\) (?:already exists|is not present in table|is still referenced from "
            r"table|conflicts with existing key))",
            re.S,
        ),
        r"\1<redacted>\2",
    ),
    (re.compile(_KEY + r"(?!<redacted>).*$", re.M), r"\1<redacted>"),
    (re.compile(r"(Failing row contains \().*$", re.M), r"\1<redacted>)"),
    (re.compile(r"^(DETAIL:).*$", re.M), r"\1  <redacted>"),
]


# Each pattern above needs one of these words: a line without any (nearly every line) is kept
# as it is without running the patterns.
_ROW_VALUE_MARKERS = ("details", "Key (", "Failing row contains (", "DETAIL:")


def scrub(text: str) -> str:
    """`text` without the row values a database error carries (DETAIL lines, keys, failing
    rows, PostgREST's details): they hold emails, hashes and usernames."""
    if not any(marker in text for marker in _ROW_VALUE_MARKERS):
        return text
    for pattern, replacement in _ROW_VALUES:
        text = pattern.sub(replacement, text)
    return text


def _scrubbed(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: _scrubbed(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrubbed(v) for v in value]
    return value


access_log = logging.getLogger("authsvc.access")


def request_id_from(header_value: str | None) -> str:
    """The client's id when it is sane; otherwise a fresh one."""
    if header_value and _SANE_REQUEST_ID.match(header_value):
        return header_value
    return uuid.uuid4().hex


def current_request_id() -> str | None:
    try:
        from flask import g, has_request_context

        if has_request_context():
            return g.get("request_id")
    except ImportError:  # pragma: no cover
        pass
    return None


def plain_traceback(exc_type: Any, exc: Any, tb: Any) -> str:
    """A traceback as text, as `traceback.format_exception` writes it but without the `^^^`
    marks under the failing expression.

    Python 3.11 places those marks by parsing each line with `ast.parse`, and its AST builder
    keeps one recursion counter for all the threads of a process (python/cpython#106905): two
    threads parsing at once can fail with "SystemError: AST constructor recursion depth
    mismatch", and the log line with it. A worker's threads log tracebacks at once exactly when
    its database goes away. Without a frame's columns, `traceback` parses nothing.
    """
    formatted = traceback.TracebackException(exc_type, exc, tb)
    pending, seen = [formatted], set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        for frame in current.stack:
            frame.colno = frame.end_colno = None
        pending += [e for e in (current.__cause__, current.__context__) if e is not None]
        pending += getattr(current, "exceptions", None) or []  # an exception group's members
    return "".join(formatted.format())


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, and extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": scrub(record.getMessage()),
        }
        request_id = getattr(record, "request_id", None) or current_request_id()
        if request_id:
            entry["request_id"] = request_id
        for key, value in record.__dict__.items():
            if key in _STANDARD_ATTRS or key.startswith("_") or key == "request_id":
                continue
            entry[key] = "<redacted>" if _SECRET_KEYS.search(key) else _scrubbed(value)
        if record.exc_info:
            exc = record.exc_info[1]
            entry["exc_type"] = type(exc).__name__ if exc else None
            entry["traceback"] = scrub(plain_traceback(*record.exc_info))
        if record.stack_info:
            entry["stack"] = scrub(record.stack_info)
        return json.dumps(entry, default=lambda v: scrub(str(v)))


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (gunicorn and test runners swap it)."""

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


# gunicorn's own lines (booting, worker exits, timeouts) as the same JSON lines on stderr:
# `logconfig_dict` and `logger_class` in gunicorn.conf.py and in `authsvc serve`.
GUNICORN_LOGCONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "authsvc.observability.JsonFormatter"}},
    "handlers": {
        "console": {"class": "authsvc.observability._StderrHandler", "formatter": "json"},
        "error_console": {"class": "authsvc.observability._StderrHandler", "formatter": "json"},
    },
    "root": {"level": "INFO", "handlers": ["console"]},
    "loggers": {
        "gunicorn.error": {
            "level": "INFO",
            "handlers": ["error_console"],
            "propagate": False,
            "qualname": "gunicorn.error",
        },
    },
}


class GunicornLogger(glogging.Logger):
    """gunicorn's logger, without gunicorn's access line: the service writes one per request
    itself (`init_app`), with the request id. A `logconfig_dict` alone turns gunicorn's on."""

    @property
    def access_log_enabled(self) -> bool:
        return False

    def access(self, *_args: Any, **_kwargs: Any) -> None:
        return None


def configure_logging(level: int = logging.INFO) -> None:
    """Send the service's logs to stderr as JSON lines (idempotent)."""
    root = logging.getLogger("authsvc")
    if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        return
    handler = _StderrHandler()
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
    # The pool reports failed reconnections: same format, same stream.
    driver = logging.getLogger("psycopg")
    driver.addHandler(handler)
    driver.setLevel(logging.WARNING)
    driver.propagate = False


def init_app(app: Any) -> None:
    """Give every request an id, echo it back, and write one access-log line."""
    from flask import g, request

    @app.before_request
    def start_request() -> None:
        g.request_id = request_id_from(request.headers.get("X-Request-ID"))
        g.started = time.perf_counter()

    @app.after_request
    def finish_request(response):
        request_id = g.get("request_id") or request_id_from(None)
        response.headers["X-Request-ID"] = request_id
        started = g.get("started")
        latency_ms = round((time.perf_counter() - started) * 1000, 2) if started else None
        rule = request.url_rule.rule if request.url_rule else None
        access_log.info(
            "%s %s %s",
            request.method,
            rule or request.path,
            response.status_code,
            extra={
                "request_id": request_id,
                "method": request.method,
                "route": rule,
                "path": request.path,
                "status": response.status_code,
                "latency_ms": latency_ms,
                "remote_addr": request.remote_addr,
            },
        )
        return response
