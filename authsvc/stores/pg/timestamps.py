"""Reading timestamptz values beyond what Python's datetime holds (years 1 to 9999).

An operator may write `banned_until = 'infinity'` or `now() + interval '10000 years'`, and
psycopg's own loaders refuse such a value with a DataError, which would turn every read of the
row into a 500. Here 'infinity' and any instant after the year 9999 read as LATEST, and
'-infinity' and any instant before the year 1 as EARLIEST, both in UTC: a comparison with
now() still says what the database would, and they render as RFC 3339.

psycopg documents subclassing its loaders for this; its C loaders (psycopg[binary], psycopg[c])
cannot be subclassed, and the pure-Python ones cost ten times as much per value on every read,
so these wrap whichever loader psycopg registered and step in only when it refuses a value.
ADAPTERS is the connection context every connection of ours is opened with (database.py).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.abc import AdaptContext
from psycopg.adapt import AdaptersMap, Loader
from psycopg.pq import Format

LATEST = datetime.max.replace(tzinfo=UTC)
EARLIEST = datetime.min.replace(tzinfo=UTC)

_OID = psycopg.postgres.types["timestamptz"].oid
# psycopg's own loaders, found once (a loader is made for every cursor that reads the type).
_PSYCOPGS = {f: psycopg.adapters.get_loader(_OID, f) for f in (Format.TEXT, Format.BINARY)}


class TimestamptzLoader(Loader):
    """Text: 'infinity', '-infinity', a year of five digits, a year BC."""

    format = Format.TEXT

    def __init__(self, oid: int, context: AdaptContext | None = None) -> None:
        super().__init__(oid, context)
        self._load = _PSYCOPGS[self.format](oid, context).load

    def load(self, data: Any) -> datetime:
        try:
            return self._load(data)
        except psycopg.DataError:
            text = bytes(data)
            if text == b"-infinity" or text.endswith(b" BC"):
                return EARLIEST
            if text == b"infinity" or text[:5].isdigit():
                return LATEST
            raise


class TimestamptzBinaryLoader(TimestamptzLoader):
    """Binary: microseconds since 2000 in 64 bits, 'infinity' being the largest."""

    format = Format.BINARY

    def load(self, data: Any) -> datetime:
        try:
            return self._load(data)
        except psycopg.DataError:
            return LATEST if int.from_bytes(data, "big", signed=True) > 0 else EARLIEST


ADAPTERS = AdaptersMap(psycopg.adapters)
ADAPTERS.register_loader(_OID, TimestamptzLoader)
ADAPTERS.register_loader(_OID, TimestamptzBinaryLoader)
