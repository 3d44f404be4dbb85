"""Rate limits in the `limits` library's notation ("10 per minute;100 per hour"), per client
address and per account, with one budget per limit whichever worker or instance a request
lands on.

Counted by limits' sliding window counter strategy in a shared storage: the service's own
Postgres (Stores.rate_limit_storage) by default, Redis when REDIS_URL is set.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from limits import RateLimitItem, parse_many
from limits.errors import StorageError as LimitsStorageError
from limits.storage import Storage, storage_from_string
from limits.strategies import SlidingWindowCounterRateLimiter

from authsvc.errors import DatabaseUnavailable, RateLimited

log = logging.getLogger("authsvc.ratelimit")


def redis_storage(url: str, timeout: float) -> Storage:
    """limits' own Redis storage at `url`; a server that does not answer within `timeout`
    seconds is an error (limits.errors.StorageError), never a hang."""
    return storage_from_string(
        url, wrap_exceptions=True, socket_connect_timeout=timeout, socket_timeout=timeout
    )


class RateLimits:
    """The named limits ("signup", "login", "refresh") the entrypoints check before working."""

    def __init__(self, enabled: bool, rules: Mapping[str, str], storage: Storage) -> None:
        self.enabled = enabled
        self._rules = {name: parse_many(spec) for name, spec in rules.items()}
        self.storage = storage
        self._limiter = SlidingWindowCounterRateLimiter(storage)
        # One statement for all the counters of a hit, where the storage can (Postgres).
        self._batch = getattr(storage, "acquire_sliding_window_entries", None)

    def hit(self, name: str, *keys: str) -> None:
        """Count one request against every rule of limit `name` for each key (a client address,
        "account:<email>"); RateLimited, with Retry-After, when any of them is spent. A storage
        that cannot be reached is DatabaseUnavailable (503)."""
        if not self.enabled:
            return
        counters = [(item, key) for key in keys for item in self._rules[name]]
        try:
            refused = self._refused(name, counters)
            if refused:
                raise self._refusal(name, refused)
        except LimitsStorageError as exc:
            log.warning("rate-limit storage failed: %r", exc.storage_error)
            raise DatabaseUnavailable(database="rate_limits") from exc

    def _refused(
        self, name: str, counters: list[tuple[RateLimitItem, str]]
    ) -> list[tuple[RateLimitItem, str]]:
        """The counters that refused this request (none: it was counted by all)."""
        if self._batch is not None:
            # All or nothing, in one statement: a refused request spends no budget.
            allowed = self._batch(
                [
                    (item.key_for(name, key), item.amount, item.get_expiry())
                    for item, key in counters
                ]
            )
            return [counter for counter, ok in zip(counters, allowed, strict=True) if not ok]
        # One call per counter (Redis: one round trip each), stopping at the first refusal.
        for item, key in counters:
            if not self._limiter.hit(item, name, key):
                return [(item, key)]
        return []

    def _refusal(self, name: str, refused: list[tuple[RateLimitItem, str]]) -> RateLimited:
        """429 with the longest wait among the refusing counters."""
        waits = []
        for item, key in refused:
            stats = self._limiter.get_window_stats(item, name, key)
            waits.append((max(1, int(stats.reset_time - time.time()) + 1), item))
        retry_after, item = max(waits, key=lambda wait: wait[0])
        return RateLimited(
            f"Too many {name} attempts; retry in {retry_after} seconds.",
            details={"retry_after": retry_after, "limit": str(item)},
            headers={"Retry-After": str(retry_after)},
        )
