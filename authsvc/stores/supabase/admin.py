"""Schema administration in Supabase mode: authsvc's own tables in the Postgres at DATABASE_URL
(the "sessions" migration set only; the profile table is created by the SQL in
supabase/migrations), and `authsvc doctor`'s checks of the project: keys, Supabase Auth, the
profile table, and triggers on auth.users that write profiles themselves."""

from __future__ import annotations

import re
from typing import Any

from authsvc.config import Settings
from authsvc.errors import AuthError, DatabaseUnavailable, StorageError
from authsvc.stores.pg.database import Database
from authsvc.stores.pg.schema import PgSchema
from authsvc.stores.supabase.clients import SupabaseClients

# A trigger function that writes the profile itself collides with the saga's insert.
_INSERTS_PROFILE = re.compile(r"insert\s+into\s+(public\s*\.\s*)?\"?users\"?[\s(]", re.I)


class SupabaseSchema:
    """SchemaAdmin: migrations of authsvc's own tables, and the project's health."""

    def __init__(self, db: Database, clients: SupabaseClients, settings: Settings) -> None:
        self.db = db
        self.clients = clients
        self._ours = PgSchema([(db, ["sessions"])], settings)

    def connection_checks(self) -> list[tuple[str, bool, str]]:
        return self._ours.connection_checks()

    def check(self) -> dict[str, str]:
        """The sessions database; Supabase's reachability is `authsvc doctor`'s business, so a
        blip at Supabase does not take every instance out of rotation."""
        return self._ours.check()

    def migrate(self) -> list[str]:
        return self._ours.migrate()

    def align_layout(self) -> list[str]:
        return self._ours.align_layout()  # no profile table of ours: nothing to align

    def layout_problems(self) -> list[str]:
        return self._ours.layout_problems()  # no profile table of ours: none

    def migration_status(self) -> dict[str, Any]:
        return self._ours.migration_status()

    def diagnose(self) -> list[tuple[str, bool, str]]:
        """Keys in the right places, Supabase Auth and the profile table reachable with the
        service role key, and no trigger on auth.users that writes profiles itself."""
        problems = self.clients.key_problems()
        checks = [
            (
                "supabase_keys",
                not problems,
                "the service role and anon keys are in their places"
                if not problems
                else "; ".join(problems),
            )
        ]
        try:
            self.clients.admin_call(lambda admin: admin.list_users(page=1, per_page=1))
            checks.append(("supabase_auth", True, f"the admin API at {self.clients.url} answers"))
        except AuthError as exc:
            checks.append(("supabase_auth", False, _remedy(exc, "Supabase Auth admin API")))
        try:
            self.clients.rest_call(lambda t: t.select("id").limit(1))
            checks.append(("profiles_table", True, "public.users answers through PostgREST"))
        except AuthError as exc:
            checks.append(("profiles_table", False, _remedy(exc, "public.users")))
        checks.append(self._trigger_check())
        return checks

    def _trigger_check(self) -> tuple[str, bool, str]:
        try:
            where = self.db.fetchone(
                "SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = "
                "'auth' AND table_name = 'users' AND column_name = 'raw_app_meta_data') AS ok"
            )
            if not where or not where["ok"]:
                return (
                    "triggers",
                    True,
                    "DATABASE_URL is not the Supabase database, so triggers on auth.users were "
                    "not checked; look under Database -> Triggers in the dashboard for one that "
                    "inserts into public.users",
                )
            rows = self.db.fetchall(
                "SELECT t.tgname, n.nspname || '.' || p.proname AS function, p.prosrc "
                "FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid "
                "JOIN pg_namespace n ON n.oid = p.pronamespace "
                "WHERE t.tgrelid = 'auth.users'::regclass AND NOT t.tgisinternal "
                "ORDER BY t.tgname"
            )
        except AuthError as exc:
            return ("triggers", False, f"could not read the triggers on auth.users: {exc.message}")
        colliding = [r for r in rows if _INSERTS_PROFILE.search(r["prosrc"] or "")]
        if colliding:
            names = ", ".join(f"{r['tgname']} ({r['function']})" for r in colliding)
            return (
                "triggers",
                False,
                f"triggers on auth.users insert into public.users themselves: {names}; every "
                "signup's profile insert would collide with them (unique_violation) -> drop "
                "them (DROP TRIGGER <name> ON auth.users); authsvc writes the profile",
            )
        others = ", ".join(r["tgname"] for r in rows)
        return (
            "triggers",
            True,
            "no trigger on auth.users writes public.users"
            + (f" (other triggers: {others})" if others else ""),
        )


def _remedy(exc: AuthError, what: str) -> str:
    if isinstance(exc, DatabaseUnavailable):
        return f"{what} cannot be reached -> check SUPABASE_URL and the network"
    reason = exc.reason if isinstance(exc, StorageError) else exc.code
    hint = exc.hint if isinstance(exc, StorageError) else None
    return f"{what}: {reason}" + (f" -> {hint}" if hint else "")
