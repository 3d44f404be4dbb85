"""The ports the services are written against, the rows they pass around, and make_stores().

Ports by what varies (docs/architecture.md has the table): identities and profiles per backend
(Postgres, Supabase); sessions, idempotency and rate-limit counters (a storage for the `limits`
library) always authsvc's own Postgres; schema administration on its own. A signup's writes go
through a SignupUnit: a transaction in one database (pg/signup.py), compensating deletes
otherwise (units.py). Stores translate their driver's errors into `authsvc.errors`; nothing
above a store ever sees a driver exception.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from uuid import UUID

from authsvc.stores.ports import (  # noqa: F401 - re-exported
    AccountAdmin,
    AuditLog,
    IdempotencyStore,
    IdentityStore,
    LifecycleStore,
    MaintenanceStore,
    ProfileStore,
    RemotePasswordCheck,
    SchemaAdmin,
    SessionStore,
    SignupUnit,
    UpgradeUnit,
)
from authsvc.stores.rows import (  # noqa: F401 - re-exported
    ADMIN_ROLE,
    COMPLETE,
    PENDING,
    Account,
    AuditEvent,
    IdempotentRecord,
    Identity,
    NewProfile,
    Outcome,
    Profile,
    RotateOutcome,
    Rotation,
    SessionCheck,
)

if TYPE_CHECKING:
    from limits.storage import Storage as RateLimitStorage

    from authsvc.config import Settings


@dataclass
class Stores:
    """Everything the services need from storage, composed for one backend and layout."""

    backend: str
    identities: IdentityStore
    profiles: ProfileStore
    sessions: SessionStore
    idempotency: IdempotencyStore
    maintenance: MaintenanceStore
    admin: SchemaAdmin
    signup: Callable[[UUID], SignupUnit]
    # Rate-limit counters shared by every worker and instance (used unless REDIS_URL is set).
    rate_limit_storage: RateLimitStorage
    # Account lifecycle (admin): what operators see and do to accounts, and the audit log.
    accounts: AccountAdmin
    audit: AuditLog
    password_check: RemotePasswordCheck | None = None
    lifecycle: LifecycleStore | None = None
    # {database name: pool numbers} of the Postgres pools behind these stores (metrics).
    pool_stats: Callable[[], dict[str, dict[str, int]]] = dict
    _open: list[Callable[[], None]] = field(default_factory=list, repr=False)
    _close: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def open(self) -> None:
        """Open the pools (after a fork, never before)."""
        for opener in self._open:
            opener()

    def close(self) -> None:
        for closer in self._close:
            closer()


# -- account lifecycle (admin): the operator's view of accounts, closing them, the audit log ------


def make_stores(settings: Settings) -> Stores:
    """The stores the settings ask for; the only place that names a backend."""
    if settings.backend == "supabase":
        from authsvc.stores.supabase import make_supabase_stores

        return make_supabase_stores(settings)
    from authsvc.stores.pg import make_postgres_stores

    return make_postgres_stores(settings)
