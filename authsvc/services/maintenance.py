"""Storage that does not grow without bound: what `authsvc purge` and the hourly purge remove."""

from __future__ import annotations

import logging
import time
from typing import Any

from authsvc.config import Settings
from authsvc.stores import Stores

log = logging.getLogger("authsvc.maintenance")

PURGE_JOB = "purge"


def purge(stores: Stores, settings: Settings) -> dict[str, Any]:
    """Remove refresh tokens and sessions that can never be used again and expired
    idempotency keys; the counts removed, and how long it took."""
    started = time.monotonic()
    counts: dict[str, Any] = dict(stores.sessions.purge(settings.spent_token_retention))
    counts["idempotency_keys"] = stores.idempotency.purge()
    counts["elapsed_ms"] = round((time.monotonic() - started) * 1000, 1)
    log.info("purge done", extra={"purged": counts})
    return counts


def purge_if_due(stores: Stores, settings: Settings) -> dict[str, Any] | None:
    """The purge, when no instance ran it within AUTHSVC_PURGE_INTERVAL_SECONDS; at most one
    instance wins each interval (an atomic claim in the database)."""
    if settings.purge_interval <= 0:
        return None
    if not stores.maintenance.claim(PURGE_JOB, settings.purge_interval):
        return None
    return purge(stores, settings)
