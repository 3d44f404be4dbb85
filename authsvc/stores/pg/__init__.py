"""The Postgres backend: identities in auth.users and profiles in public.users, through psycopg 3,
in one database (the default) or two (AUTH_DATABASE_URL differs from DATABASE_URL).

In one database a signup is one transaction (TransactionalSignup); across two, each write
commits on its own and compensation deletes (units.CompensatingSignup). Sessions, refresh tokens,
idempotency keys and rate-limit counters live with the identities.
"""

from __future__ import annotations

from functools import partial

from authsvc.config import Settings
from authsvc.stores import Stores
from authsvc.stores.pg.accounts import PgAccounts
from authsvc.stores.pg.audit import PgAuditLog
from authsvc.stores.pg.database import Database
from authsvc.stores.pg.idempotency import PgIdempotency, PgMaintenance
from authsvc.stores.pg.identities import PgIdentities
from authsvc.stores.pg.lifecycle import PgLifecycle
from authsvc.stores.pg.profiles import PgProfiles
from authsvc.stores.pg.ratelimits import PgRateLimits
from authsvc.stores.pg.schema import PgSchema
from authsvc.stores.pg.sessions import PgSessions
from authsvc.stores.pg.signup import TransactionalSignup
from authsvc.stores.units import CompensatingSignup


def make_postgres_stores(settings: Settings) -> Stores:
    if not settings.database_url:
        raise ValueError("the Postgres backend needs a database URL")
    if settings.split:
        auth_db = Database.from_settings(
            settings.auth_database_url or "", "auth_database", settings
        )
        app_db = Database.from_settings(settings.database_url, "database", settings)
        databases = [auth_db, app_db]
        plan = [(auth_db, ["auth", "sessions"]), (app_db, ["app"])]
    else:
        auth_db = app_db = Database.from_settings(settings.database_url, "database", settings)
        databases = [auth_db]
        plan = [(auth_db, ["auth", "sessions", "app"])]
    identities = PgIdentities(auth_db, profiles_here=not settings.split)
    profiles = PgProfiles(app_db, co_located=not settings.split)
    if settings.split:
        unit = partial(CompensatingSignup, identities, profiles)
    else:
        unit = partial(TransactionalSignup, auth_db, identities, profiles)
    return Stores(
        backend="postgres",
        identities=identities,
        profiles=profiles,
        sessions=PgSessions(auth_db, bans_known=True, profiles_here=not settings.split),
        idempotency=PgIdempotency(auth_db),
        maintenance=PgMaintenance(auth_db),
        admin=PgSchema(plan, settings),
        signup=unit,
        rate_limit_storage=PgRateLimits(auth_db),
        lifecycle=PgLifecycle(auth_db, app_db, co_located=not settings.split),
        accounts=PgAccounts(auth_db, app_db, co_located=not settings.split),
        audit=PgAuditLog(auth_db),
        pool_stats=lambda: {db.name: db.stats() for db in databases},
        _open=[db.open for db in databases],
        _close=[db.close for db in databases],
    )
