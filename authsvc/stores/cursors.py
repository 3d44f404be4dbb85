"""Opaque page cursors: a store's position in a listing, as a URL-safe string.

A cursor is base64url-encoded JSON made by the store that reads it back; clients only hand it
back. One that does not decode to what the store expects is the client's error (422), never a
500.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from authsvc.errors import ValidationFailed

MAX_LENGTH = 512


def encode(position: Any) -> str:
    """`position` (any JSON value) as an opaque cursor."""
    raw = json.dumps(position, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode(cursor: str) -> Any:
    """The position in `cursor`; ValidationFailed when it is not one of ours."""
    try:
        if len(cursor) > MAX_LENGTH:
            raise ValueError("too long")
        padded = cursor + "=" * (-len(cursor) % 4)
        return json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, UnicodeError, binascii.Error):
        raise invalid() from None


def invalid() -> ValidationFailed:
    """The 422 for a cursor this listing did not give out."""
    return ValidationFailed(
        details={"cursor": ["Not a cursor this listing gave out; start again without one."]}
    )
