"""Rate limits in flask-limiter's notation ("10 per minute;100 per hour"), per client address
and per account, kept in memory or, for several instances, in Redis (REDIS_URL)."""

from __future__ import annotations

import time

from limits import parse_many
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from authsvc.errors import RateLimited


class RateLimits:
    def __init__(self, enabled: bool, rules: dict[str, str], redis_url: str | None = None) -> None:
        self.enabled = enabled
        self._rules = {name: parse_many(spec) for name, spec in rules.items()}
        self._limiter = MovingWindowRateLimiter(storage_from_string(redis_url or "memory://"))

    def hit(self, name: str, *keys: str) -> None:
        """Count one request for each key; RateLimited (with Retry-After) when over a limit."""
        if not self.enabled:
            return
        for key in keys:
            for item in self._rules[name]:
                if not self._limiter.hit(item, name, key):
                    stats = self._limiter.get_window_stats(item, name, key)
                    retry_after = max(1, int(stats.reset_time - time.time()) + 1)
                    raise RateLimited(
                        f"Too many {name} attempts; retry in {retry_after} seconds.",
                        details={"retry_after": retry_after, "limit": str(item)},
                        headers={"Retry-After": str(retry_after)},
                    )
