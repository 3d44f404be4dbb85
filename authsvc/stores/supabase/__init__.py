"""The Supabase backend: identities in Supabase Auth (admin API), profiles behind PostgREST,
sessions in Postgres.

- Identities are Supabase Auth users, written with the service role key (identities.py).
- Profiles are rows of `public.users` in the Supabase project (created by the SQL under
  `supabase/`), written through PostgREST with the same key (profiles.py).
- Sessions, refresh tokens, idempotency keys and rate-limit counters stay authsvc's own, in
  schema `authsvc` of the Postgres at DATABASE_URL (Supabase's own database through its
  connection string, or any other Postgres; with none configured, the embedded one). They are
  not behind PostgREST because refresh-token rotation needs row locks held across several
  statements of one transaction, which the REST API cannot express.

Nothing is shared by a transaction, so a signup compensates by deleting
(units.CompensatingSignup), the same unit split Postgres uses. Installed with the `supabase`
extra (`pip install .[supabase]`) and imported only in this mode.
"""

from __future__ import annotations

from functools import partial

from authsvc.config import Settings
from authsvc.stores import Stores
from authsvc.stores.pg.audit import PgAuditLog
from authsvc.stores.pg.database import Database
from authsvc.stores.pg.idempotency import PgIdempotency, PgMaintenance
from authsvc.stores.pg.ratelimits import PgRateLimits
from authsvc.stores.pg.sessions import PgSessions
from authsvc.stores.supabase.accounts import SupabaseAccounts
from authsvc.stores.supabase.admin import SupabaseSchema
from authsvc.stores.supabase.clients import SupabaseClients
from authsvc.stores.supabase.identities import SupabaseIdentities, SupabasePasswordCheck
from authsvc.stores.supabase.lifecycle import SupabaseLifecycle
from authsvc.stores.supabase.profiles import SupabaseProfiles
from authsvc.stores.units import CompensatingSignup


def make_supabase_stores(settings: Settings) -> Stores:
    if not settings.database_url:
        raise ValueError("the Supabase backend needs a database URL for sessions")
    clients = SupabaseClients(settings)
    db = Database.from_settings(settings.database_url, "database", settings)
    profiles = SupabaseProfiles(clients)
    identities = SupabaseIdentities(clients, settings.supabase_email_confirm, profiles.id_for_email)
    return Stores(
        backend="supabase",
        identities=identities,
        profiles=profiles,
        # Bans live in Supabase Auth, not in this database: the services ask the identity.
        sessions=PgSessions(db, bans_known=False),
        idempotency=PgIdempotency(db),
        maintenance=PgMaintenance(db),
        admin=SupabaseSchema(db, clients, settings),
        signup=partial(CompensatingSignup, identities, profiles),
        rate_limit_storage=PgRateLimits(db),
        password_check=SupabasePasswordCheck(clients, identities.find_by_email),
        lifecycle=SupabaseLifecycle(clients, identities, profiles, db),
        accounts=SupabaseAccounts(clients, profiles, db),
        audit=PgAuditLog(db),
        pool_stats=lambda: {db.name: db.stats()},
        _open=[db.open],
        _close=[db.close, clients.close],
    )
