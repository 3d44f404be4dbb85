"""Whether the service can serve: every database answers and no migration is pending."""

from __future__ import annotations

from typing import Any

from authsvc.errors import AuthError
from authsvc.stores import Stores


def readiness(stores: Stores) -> dict[str, str]:
    """{"database": "ok" | why not, "migrations": "ok" | why not}."""
    states = stores.admin.check()
    database_ok = all(v == "ok" for v in states.values())
    checks = {
        "database": "ok"
        if database_ok
        else "; ".join(f"{k}: {v}" for k, v in states.items() if v != "ok")
    }
    if not database_ok:
        checks["migrations"] = "unknown (database unreachable)"
        return checks
    try:
        pending = stores.admin.migration_status()["pending"]
    except AuthError as exc:
        checks["migrations"] = f"error: {exc.message}"
        return checks
    checks["migrations"] = "ok" if not pending else f"pending: {', '.join(pending)}"
    return checks


def schema_version(stores: Stores) -> Any:
    """The schema version, or None when the database cannot tell."""
    try:
        return stores.admin.migration_status()["schema_version"]
    except AuthError:
        return None
