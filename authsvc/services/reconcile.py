"""Drift between identities and profiles, found and repaired (`authsvc reconcile`)."""

from __future__ import annotations

import logging
import time
from typing import Any

from authsvc.stores import Drift, Store

log = logging.getLogger("authsvc.reconcile")

ID_LIMIT = 1000


def find_drift(store: Store, grace_seconds: int) -> Drift:
    """Identities without profiles (past the grace period) and profiles without identities."""
    return store.find_drift(grace_seconds, id_limit=ID_LIMIT)


def report(drift: Drift) -> dict[str, Any]:
    return {
        "identities_without_profile": {
            "count": drift.identities_without_profile_count,
            "ids": [str(i) for i in drift.identities_without_profile],
        },
        "profiles_without_identity": {
            "count": drift.profiles_without_identity_count,
            "ids": [str(i) for i in drift.profiles_without_identity],
        },
        "unfinished_signups": {
            "count": drift.unfinished_with_profile_count,
            "ids": [str(i) for i in drift.unfinished_with_profile],
        },
    }


def run(store: Store, grace_seconds: int, repair: bool) -> tuple[dict[str, Any], bool]:
    """The reconcile report, and whether drift remains afterwards."""
    started = time.monotonic()
    drift = find_drift(store, grace_seconds)
    result = report(drift)
    repaired: dict[str, int] = {}
    remaining = drift.total
    if repair and drift.total:
        repaired = store.repair_drift(grace_seconds)
        remaining = find_drift(store, grace_seconds).total
        log.warning(
            "reconcile repaired drift", extra={"repaired": repaired, "remaining": remaining}
        )
    result["repaired"] = repaired
    result["remaining"] = remaining
    result["grace_seconds"] = grace_seconds
    result["elapsed_ms"] = round((time.monotonic() - started) * 1000, 1)
    return result, remaining > 0
