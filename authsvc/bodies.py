"""Request bodies held to AUTHSVC_MAX_BODY_BYTES however they are framed.

A body with a Content-Length over the limit is refused by werkzeug before it is read. A body
without one (Transfer-Encoding: chunked; gunicorn de-chunks it and sets
wsgi.input_terminated) werkzeug only wraps in a LimitedStream(limit, is_max=True), whose
read() stops at the limit and returns what it has: a longer body was silently cut to its first
`limit` bytes and processed (a JSON body padded with spaces still parsed). Here such a body is
read to its end or to one byte past the limit, and that byte is a 413.
"""

from __future__ import annotations

import io
from typing import IO

from flask import Request as FlaskRequest
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge
from werkzeug.utils import cached_property
from werkzeug.wsgi import get_input_stream


class CappedStream(io.RawIOBase):
    """A body of unknown length: its bytes up to `limit`; one byte more raises 413."""

    def __init__(self, stream: IO[bytes], limit: int) -> None:
        self._stream = stream
        self._limit = limit
        self._read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        # Ask for at most one byte past the limit: the body is never read further than that.
        wanted = min(len(buffer), self._limit + 1 - self._read)
        try:
            data = self._stream.read(wanted)
        except (OSError, ValueError) as exc:
            raise ClientDisconnected() from exc
        self._read += len(data)
        if self._read > self._limit:
            raise RequestEntityTooLarge()
        buffer[: len(data)] = data
        return len(data)


class Request(FlaskRequest):
    """Flask's request, with a chunked body held to max_content_length (see above)."""

    @cached_property
    def stream(self) -> IO[bytes]:
        if self.shallow:
            raise RuntimeError("This request was created with shallow=True: no body to read.")
        limit = self.max_content_length
        terminated = "wsgi.input_terminated" in self.environ
        if limit is not None and terminated and self.content_length is None:
            return CappedStream(self.environ["wsgi.input"], limit)
        return get_input_stream(self.environ, max_content_length=limit)
