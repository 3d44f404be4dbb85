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
    """Remove what can never be used again or is past its keeping: spent and expired refresh
    tokens, ended sessions, expired idempotency keys and one-time links, anonymous accounts idle
    past AUTHSVC_ANONYMOUS_MAX_IDLE_DAYS (both rows), audit events past
    AUTHSVC_AUDIT_RETENTION_DAYS; the counts removed, and how long it took."""
    from authsvc.services import anonymous, audit, links

    started = time.monotonic()
    counts: dict[str, Any] = dict(stores.sessions.purge(settings.spent_token_retention))
    counts["idempotency_keys"] = stores.idempotency.purge()
    counts["one_time_tokens"] = links.purge_expired_tokens(stores, settings)
    counts.update(anonymous.purge_idle(stores, settings))
    counts.update(audit.purge_expired(stores, settings))
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
