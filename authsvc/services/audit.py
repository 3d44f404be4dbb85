"""The audit log: who did what to which account, from where, and when.

Every use case that changes an account or a session records one event through `record`. An event
carries its type, the user it is about, the actor (the user themselves, an admin, the admin key,
the command line, or the service itself), the request id, the client's address and user agent,
and a few details. Never a password, a token or a hash: details are plain values, and keys that
look like secrets are dropped before anything is written.

Recording must not fail the operation it records: a write that fails is logged and counted
(`failed_writes()`, and authsvc_audit_write_failures_total on /metrics), and the operation goes on.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any
from uuid import UUID

from authsvc.stores import AuditEvent, Stores

if TYPE_CHECKING:
    from authsvc.config import Settings

log = logging.getLogger("authsvc.audit")

# The event types the service records (API.md, "Account lifecycle").
SIGNUP = "signup"
SIGNUP_FAILED = "signup_failed"
LOGIN = "login"
LOGIN_FAILED = "login_failed"
LOGOUT = "logout"
REFRESH_REUSED = "refresh_reused"
USER_BANNED = "user_banned"
USER_UNBANNED = "user_unbanned"
USER_DELETED = "user_deleted"
SESSIONS_REVOKED = "sessions_revoked"
ROLE_GRANTED = "role_granted"
ROLE_REVOKED = "role_revoked"
RECONCILE_REPAIR = "reconcile_repair"
PASSWORD_CHANGED = "password_changed"  # noqa: S105 - an event name
PASSWORD_RESET = "password_reset"  # noqa: S105 - an event name
EMAIL_VERIFIED = "email_verified"
USER_UPGRADED = "user_upgraded"

ACTORS = ("user", "admin", "admin_key", "cli", "system")
_TYPE = re.compile(r"^[a-z][a-z_]{0,63}\Z")
_SECRET_KEY = re.compile(r"pass|secret|token|hash|authorization|cookie|key", re.I)
_MAX_TEXT = 200
_MAX_ITEMS = 20


@dataclass(frozen=True)
class Origin:
    """Who acts, and from where: what every event carries besides its subject."""

    actor: str = "user"
    actor_id: UUID | None = None
    request_id: str | None = None
    ip: str | None = None
    user_agent: str | None = None

    def acting(self, actor: str, actor_id: UUID | None = None) -> Origin:
        """The same request, with another actor (an admin, the admin key)."""
        return replace(self, actor=actor, actor_id=actor_id)


CLI = Origin(actor="cli")
SYSTEM = Origin(actor="system")


class _Tally:
    """A thread-safe count of failed writes in this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._total = 0
        self._unreported = 0

    def add(self) -> int:
        with self._lock:
            self._total += 1
            self._unreported += 1
            return self._total

    def total(self) -> int:
        with self._lock:
            return self._total

    def take_unreported(self) -> int:
        """Failures since the last call (for a metrics counter)."""
        with self._lock:
            count, self._unreported = self._unreported, 0
            return count


FAILED_WRITES = _Tally()


def failed_writes() -> int:
    """Audit writes that failed in this process since it started."""
    return FAILED_WRITES.total()


def _plain(value: Any) -> Any:
    """`value` as something safe and small to keep: a number, a flag, short text, a short list."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in list(value)[:_MAX_ITEMS]]
    return str(value)[:_MAX_TEXT]


def clean_details(details: dict[str, Any]) -> dict[str, Any]:
    """Details with secret-looking keys dropped and every value made plain."""
    return {str(k)[:64]: _plain(v) for k, v in details.items() if not _SECRET_KEY.search(str(k))}


def record(
    stores: Stores,
    origin: Origin,
    event_type: str,
    user_id: UUID | None = None,
    **details: Any,
) -> bool:
    """Append one event; True when it was written. Never raises: a failed write is logged and
    counted, and the operation being recorded goes on."""
    try:
        if not _TYPE.match(event_type) or origin.actor not in ACTORS:
            raise ValueError(f"not an audit event: {event_type!r} by {origin.actor!r}")
        stores.audit.append(
            AuditEvent(
                type=event_type,
                user_id=user_id,
                actor=origin.actor,
                actor_id=origin.actor_id,
                request_id=(origin.request_id or None) and origin.request_id[:128],
                ip=(origin.ip or None) and origin.ip[:64],
                user_agent=(origin.user_agent or None) and origin.user_agent[:512],
                details=clean_details(details),
            )
        )
    except Exception as exc:  # noqa: BLE001 - recording never fails what it records
        total = FAILED_WRITES.add()
        log.error(
            "audit event not recorded",
            extra={
                "audit_type": event_type,
                "user_id": str(user_id) if user_id else None,
                "error": repr(exc),
                "audit_failed_writes": total,
            },
        )
        return False
    return True


def page(
    stores: Stores,
    user_id: UUID | None,
    event_type: str | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[AuditEvent], str | None]:
    """Events newest first, optionally of one user and one type."""
    return stores.audit.page(user_id, event_type, cursor, limit)


def purge_expired(stores: Stores, settings: Settings) -> dict[str, int]:
    """Remove audit events older than AUTHSVC_AUDIT_RETENTION_DAYS; how many, by kind."""
    removed = stores.audit.purge(settings.audit_retention_days)
    if removed:
        log.info(
            "audit events past their retention removed",
            extra={"count": removed, "retention_days": settings.audit_retention_days},
        )
    return {"audit_events": removed}
