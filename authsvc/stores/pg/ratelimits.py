"""Rate-limit counters in the service's own Postgres: a storage for the `limits` library.

The strategy is the sliding window counter (limits' SlidingWindowCounterRateLimiter): each
counter is one row with the hits of the current window and of the one before, and the previous
window's hits are weighted by how much of it still overlaps the last `expiry` seconds. That is
the strategy whose every hit is one atomic statement here: an INSERT ... ON CONFLICT DO UPDATE
that moves the window on, checks the weighted count and adds the hit under the row's lock. A
fixed window is one statement too but lets twice the budget through around a window's edge; a
moving window needs a row (or an array element) per hit and a lock over all of them.

Windows start at a counter's first hit and are re-anchored after a whole idle window, as in
limits' Redis storage, so both backends answer the same. Time is the database's clock, the one
all instances share. Every statement runs on its own through the service's pool (autocommit, no
session state, no advisory lock), so it works behind a transaction-mode pooler too.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Sequence

from limits.storage import SlidingWindowCounterSupport, Storage

from authsvc.errors import AuthError, Reason, StorageError
from authsvc.stores.pg.database import Database

log = logging.getLogger("authsvc.stores")

TABLE = "authsvc.rate_limits"
# Fixed-window counters (FixedWindowRateLimiter's incr/get) live under their own keys: limits
# builds the same key for a rule whichever strategy counts it.
_FIXED = "fixed:"


def _window(row: str, expiry: str) -> dict[str, str]:
    """SQL for counter `row` as it stands now: its window moved on by whole windows elapsed
    (one: the current window becomes the previous; more: both are empty, re-anchored now)."""
    span = f"make_interval(secs => {expiry})"
    elapsed = f"floor(extract(epoch FROM now() - {row}.window_start) / {expiry})"
    start = (
        f"CASE WHEN {elapsed} <= 0 THEN {row}.window_start "
        f"WHEN {elapsed} = 1 THEN {row}.window_start + {span} ELSE now() END"
    )
    current = f"CASE WHEN {elapsed} <= 0 THEN {row}.current ELSE 0 END"
    previous = (
        f"CASE WHEN {elapsed} <= 0 THEN {row}.previous "
        f"WHEN {elapsed} = 1 THEN {row}.current ELSE 0 END"
    )
    # Seconds the previous window still weighs (the rest of the current one), and the weighted
    # count, rounded down as limits does it.
    previous_ttl = f"extract(epoch FROM ({start}) + {span} - now())"
    weighted = f"floor(({previous}) * {previous_ttl} / {expiry}) + ({current})"
    return {
        "start": start,
        "current": current,
        "previous": previous,
        "span": span,
        "previous_ttl": previous_ttl,
        "weighted": weighted,
    }


_SEEN = _window("r", "w.expiry")
_LOCKED = _window("r", "r.expiry")

# One statement per hit, over every counter the hit touches. `seen` reads the counters as the
# statement's snapshot has them: unless every one has room, nothing is written and the hit is
# refused. Otherwise each counter is upserted in key order (so two hits over the same counters
# lock them in the same order and never deadlock), and checked again under its row lock, so no
# counter ever lets more than its limit through however many workers hit it at once. (Only when
# a concurrent hit fills a counter between the snapshot and the lock is a refused hit counted by
# the request's other counters: it spends budget, it never lets one through.)
_ACQUIRE = f"""
WITH wanted AS (
    SELECT w.key, w.lim, w.expiry
    FROM unnest(%(keys)s::text[], %(limits)s::int[], %(expiries)s::int[]) AS w(key, lim, expiry)
),
seen AS (
    SELECT w.key, coalesce({_SEEN["weighted"]}, 0) + %(amount)s <= w.lim AS room
    FROM wanted w LEFT JOIN {TABLE} r ON r.key = w.key
),
verdict AS (SELECT bool_and(room) AS room FROM seen),
hit AS (
    INSERT INTO {TABLE} AS r (key, lim, expiry, window_start, current, previous, expires_at)
    SELECT w.key, w.lim, w.expiry, now(), %(amount)s, 0,
           now() + 2 * make_interval(secs => w.expiry)
    FROM wanted w, verdict v
    WHERE v.room
    ORDER BY w.key
    ON CONFLICT (key) DO UPDATE SET
        window_start = {_LOCKED["start"]},
        current = {_LOCKED["current"]} + excluded.current,
        previous = {_LOCKED["previous"]},
        expires_at = ({_LOCKED["start"]}) + 2 * {_LOCKED["span"]},
        lim = excluded.lim
    WHERE {_LOCKED["weighted"]} + excluded.current <= excluded.lim
    RETURNING r.key
)
SELECT s.key, CASE WHEN v.room THEN h.key IS NOT NULL ELSE s.room END AS allowed
FROM seen s CROSS JOIN verdict v LEFT JOIN hit h ON h.key = s.key
"""

_WINDOW = f"""
SELECT {_LOCKED["previous"]} AS previous, {_LOCKED["previous_ttl"]} AS previous_ttl,
       {_LOCKED["current"]} AS current,
       extract(epoch FROM ({_LOCKED["start"]}) + 2 * {_LOCKED["span"]} - now()) AS current_ttl
FROM {TABLE} r WHERE r.key = %s
"""

_INCR = f"""
INSERT INTO {TABLE} AS r (key, lim, expiry, window_start, current, previous, expires_at)
VALUES (%(key)s, NULL, %(expiry)s, now(), %(amount)s, 0, now() + make_interval(secs => %(expiry)s))
ON CONFLICT (key) DO UPDATE SET
    current = CASE WHEN r.expires_at <= now() THEN excluded.current
                   ELSE r.current + excluded.current END,
    window_start = CASE WHEN r.expires_at <= now() THEN now() ELSE r.window_start END,
    expires_at = CASE WHEN r.expires_at <= now() THEN excluded.expires_at ELSE r.expires_at END
RETURNING current
"""

# SKIP LOCKED: the purge never waits for a row a hit holds, so it can never deadlock with one.
_PURGE = f"""
DELETE FROM {TABLE} WHERE key IN (
    SELECT key FROM {TABLE} WHERE expires_at < now()
    ORDER BY expires_at LIMIT %s FOR UPDATE SKIP LOCKED
)
"""


class PgRateLimits(Storage, SlidingWindowCounterSupport):
    """limits' storage over authsvc.rate_limits, through the service's pool. Errors leave as
    authsvc errors (DatabaseUnavailable when the database cannot be reached)."""

    def __init__(
        self,
        db: Database,
        purge_every: int = 64,
        purge_batch: int = 512,
        wrap_exceptions: bool = False,
    ) -> None:
        super().__init__(None, wrap_exceptions=wrap_exceptions)
        self.db = db
        # Every `purge_every`-th hit also deletes up to `purge_batch` expired counters: more
        # than the hits in between can create, so expired rows never pile up.
        self.purge_every = purge_every
        self.purge_batch = purge_batch
        self._hits = itertools.count(1)

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return AuthError

    # -- the sliding window counter ----------------------------------------------------------

    def acquire_sliding_window_entries(
        self, entries: Sequence[tuple[str, int, int]], amount: int = 1
    ) -> list[bool]:
        """Hit every counter of `entries` (key, limit, expiry in seconds) at once, or none:
        for each, whether it let the hit through. All True: the hit was counted everywhere."""
        by_key = {key: (limit, expiry) for key, limit, expiry in entries}
        if not by_key:
            return []
        keys = sorted(by_key)
        rows = self.db.fetchall(
            _ACQUIRE,
            {
                "keys": keys,
                "limits": [by_key[k][0] for k in keys],
                "expiries": [by_key[k][1] for k in keys],
                "amount": amount,
            },
        )
        allowed = {row["key"]: bool(row["allowed"]) for row in rows}
        if self.purge_every and next(self._hits) % self.purge_every == 0:
            self._purge_quietly()
        return [allowed[key] for key, _, _ in entries]

    def acquire_sliding_window_entry(
        self, key: str, limit: int, expiry: int, amount: int = 1
    ) -> bool:
        """One counter's hit (limits' SlidingWindowCounterRateLimiter.hit)."""
        return self.acquire_sliding_window_entries([(key, limit, expiry)], amount)[0]

    def get_sliding_window(self, key: str, expiry: int) -> tuple[int, float, int, float]:
        """(previous hits, seconds they still weigh, current hits, seconds until the current
        window's hits stop counting), as limits' Redis storage answers."""
        row = self.db.fetchone(_WINDOW, (key,))
        if row is None or not (row["previous"] or row["current"]):
            return 0, 0.0, 0, 0.0
        previous = int(row["previous"])
        return (
            previous,
            max(0.0, float(row["previous_ttl"])) if previous else 0.0,
            int(row["current"]),
            max(0.0, float(row["current_ttl"])),
        )

    def clear_sliding_window(self, key: str, expiry: int) -> None:
        self.clear(key)

    # -- the fixed window (limits' base Storage) -------------------------------------------------

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        """Add `amount` to a counter that starts at its first hit and ends `expiry` s later."""
        row = self.db.fetchone(_INCR, {"key": _FIXED + key, "expiry": expiry, "amount": amount})
        if row is None:  # a trigger on the table swallowed the row
            raise StorageError(Reason.NO_ROW_RETURNED)
        return int(row["current"])

    def get(self, key: str) -> int:
        row = self.db.fetchone(
            f"SELECT current FROM {TABLE} WHERE key = %s AND expires_at > now()", (_FIXED + key,)
        )
        return int(row["current"]) if row else 0

    def get_expiry(self, key: str) -> float:
        """When the fixed window ends, on this process' clock (now when there is none)."""
        row = self.db.fetchone(
            f"SELECT extract(epoch FROM expires_at - now()) AS left FROM {TABLE} WHERE key = %s",
            (_FIXED + key,),
        )
        return time.time() + (max(0.0, float(row["left"])) if row else 0.0)

    # -- upkeep ----------------------------------------------------------------------------------

    def check(self) -> bool:
        """The table can be read."""
        try:
            self.db.fetchone(f"SELECT 1 AS ok FROM {TABLE} LIMIT 1")
        except AuthError:
            return False
        return True

    def reset(self) -> int | None:
        """Forget every counter; how many there were."""
        return self.db.execute(f"DELETE FROM {TABLE}")

    def clear(self, key: str) -> None:
        self.db.execute(f"DELETE FROM {TABLE} WHERE key = ANY(%s)", ([key, _FIXED + key],))

    def purge_expired(self, batch: int | None = None) -> int:
        """Delete up to `batch` counters that no longer count anything, oldest first."""
        return self.db.execute(_PURGE, (batch or self.purge_batch,))

    def _purge_quietly(self) -> None:
        # Upkeep rides on a hit that has already been counted: a failure here is logged, and
        # the next purge tries again.
        try:
            self.purge_expired()
        except AuthError as exc:
            log.warning("rate-limit purge failed: %s", exc.message)
