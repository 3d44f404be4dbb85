"""Schema administration in Postgres: migrations (yoyo-migrations, plain SQL), their status,
reachability, and `authsvc doctor`'s checks of roles and triggers.

Each database gets the migration sets it holds: the identity database "auth" then "sessions",
the profile database "app". In one database, all three in that order, so the profile's foreign
key finds auth.users. With Supabase, only "sessions", in the Postgres at DATABASE_URL. After
the migrations, `align_layout` fits the profile database to the layout of today
(stores/pg/layout.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from typing import Any

import psycopg

from authsvc.config import ConfigError, Settings
from authsvc.errors import DatabaseUnavailable, Reason, StorageError
from authsvc.stores.pg import layout
from authsvc.stores.pg.database import Database

# yoyo's bookkeeping tables live in our own schema, whatever the role's search_path says.
META_SCHEMA = "authsvc"
MIGRATION_TABLE = "_yoyo_migration"
_ADVISORY_LOCK_KEY = 0x61757468737663  # "authsvc"


def migrations_dir(name: str) -> str:
    return str(resources.files("authsvc").joinpath("stores", "pg", "migrations", name))


def _yoyo_backend(db: Database) -> Any:
    from yoyo.backends.core.postgresql import PostgresqlPsycopgBackend
    from yoyo.connections import parse_uri

    url = db.url
    timeout = db._kwargs["connect_timeout"]

    class Backend(PostgresqlPsycopgBackend):
        # yoyo parses URLs its own way; connect with the libpq URL we were given instead.
        def connect(self, dburi: Any) -> psycopg.Connection:
            conn = psycopg.connect(url, autocommit=True, connect_timeout=timeout)
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {META_SCHEMA}")
            conn.execute(f"SET search_path TO {META_SCHEMA}")
            return conn

    backend = Backend(parse_uri("postgresql+psycopg://authsvc/authsvc"), MIGRATION_TABLE)
    backend.init_database()
    return backend


@contextmanager
def _migration_lock(db: Database) -> Iterator[None]:
    """Serialise migrations across instances; the lock dies with the connection if we do."""
    if db.transaction_pooler:
        # The pooler hands each transaction whatever server connection is free: a session
        # lock taken through it would be held by a connection nobody controls. `authsvc
        # migrate` runs on Settings.direct() instead.
        variable = f"{db.name.upper()}_DIRECT_URL"  # "auth_database" -> AUTH_DATABASE_...
        raise ConfigError(
            f"migrations need a direct connection: set {variable} (AUTHSVC_DB_POOLER="
            "transaction says this URL goes through a transaction-mode pooler)"
        )
    conn = db.connect_direct()
    try:
        conn.execute("SELECT pg_advisory_lock(%s)", (_ADVISORY_LOCK_KEY,))
        yield
    finally:
        conn.close()


def apply_migrations(db: Database, sets: list[str]) -> list[str]:
    """Apply the pending migrations of `sets` to `db`; returns the ids applied (safe to rerun)."""
    from yoyo import read_migrations

    applied: list[str] = []
    try:
        with _migration_lock(db):
            backend = _yoyo_backend(db)
            try:
                # We hold the advisory lock, so a leftover yoyo lock row is from a dead process.
                backend.break_lock()
                for name in sets:
                    migrations = read_migrations(migrations_dir(name))
                    with backend.lock(timeout=30):
                        pending = backend.to_apply(migrations)
                        backend.apply_migrations(pending)
                        applied.extend(m.id for m in pending)
            finally:
                backend.connection.close()
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(database=db.name) from exc
    return applied


def migration_status(db: Database, sets: list[str]) -> dict[str, Any]:
    """Applied and pending migration ids of `sets` in `db` (read-only)."""
    from yoyo import read_migrations

    known: list[str] = []
    for name in sets:
        known.extend(m.id for m in read_migrations(migrations_dir(name)))
    try:
        rows = db.fetchall(
            f"SELECT migration_id FROM {META_SCHEMA}.{MIGRATION_TABLE}"  # noqa: S608
        )
        done = {r["migration_id"] for r in rows}
    except StorageError as exc:
        if exc.reason in (Reason.UNDEFINED_TABLE, Reason.UNDEFINED_SCHEMA):
            done = set()
        else:
            raise
    applied = [m for m in known if m in done]
    return {
        "applied": applied,
        "pending": [m for m in known if m not in done],
        # Migration ids are numbered across all sets ("0003_profiles"): the number is the
        # schema version.
        "latest": max(m.split("_", 1)[0] for m in applied) if applied else None,
    }


# The tables of each migration set that the service reads and writes.
TABLES = {
    "auth": ["auth.users"],
    "app": ["public.users"],
    "sessions": [
        "authsvc.sessions",
        "authsvc.refresh_tokens",
        "authsvc.idempotency_keys",
        "authsvc.maintenance",
        "authsvc.rate_limits",
        "authsvc.one_time_tokens",
    ],
}


class PgSchema:
    """SchemaAdmin for databases we migrate: `plan` lists each database and its sets."""

    def __init__(self, plan: list[tuple[Database, list[str]]], settings: Settings) -> None:
        self.plan = plan
        self.settings = settings

    def connection_checks(self) -> list[tuple[str, bool, str]]:
        """How the connections behave across transactions (a transaction-mode pooler)."""
        from authsvc.stores.pg.pooler import pooler_checks

        return pooler_checks(self.settings)

    def check(self) -> dict[str, str]:
        return {db.name: db.ping() for db, _ in self.plan}

    def migrate(self) -> list[str]:
        applied: list[str] = []
        for db, sets in self.plan:
            applied.extend(apply_migrations(db, sets))
        return applied

    def align_layout(self) -> list[str]:
        """Bring the profile database to the layout's shape (stores/pg/layout.py), under the
        migrations' lock, as their owner; one sentence per change made or problem left."""
        app_db = self._profile_database()
        if app_db is None:
            return []
        try:
            with _migration_lock(app_db):
                conn = app_db.connect_direct()
                try:
                    with conn.transaction():
                        return layout.align(conn, self.settings.split)
                finally:
                    conn.close()
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailable(database=app_db.name) from exc

    def layout_problems(self) -> list[str]:
        app_db = self._profile_database()
        if app_db is None or not self.settings.split:
            return []
        return [detail for _, ok, detail in layout.checks(app_db) if not ok]

    def _profile_database(self) -> Database | None:
        return next((db for db, sets in self.plan if "app" in sets), None)

    def migration_status(self) -> dict[str, Any]:
        status = {db.name: migration_status(db, sets) for db, sets in self.plan}
        latest = [s["latest"] for s in status.values() if s["latest"]]
        return {
            "databases": status,
            "pending": [m for s in status.values() for m in s["pending"]],
            "schema_version": max(latest) if latest else None,
        }

    def diagnose(self) -> list[tuple[str, bool, str]]:
        """Privileges of the connecting role on each of our tables, the split layout's shape
        (stores/pg/layout.py), and triggers on auth.users that would fight the saga."""
        missing = []
        for db, sets in self.plan:
            for table in (t for name in sets for t in TABLES[name]):
                # One privilege at a time: has_table_privilege with a list is true when any
                # one of them is held.
                row = db.fetchone(
                    "SELECT current_user AS role, array_remove(ARRAY["
                    + ", ".join(
                        f"CASE WHEN has_table_privilege(%(t)s, '{p}') THEN NULL ELSE '{p}' END"
                        for p in ("SELECT", "INSERT", "UPDATE", "DELETE")
                    )
                    + "], NULL) AS lacking",
                    {"t": table},
                )
                if row and row["lacking"]:
                    missing.append(f"{'/'.join(row['lacking'])} for {row['role']} on {table}")
        checks = [
            (
                "roles",
                not missing,
                "the database role can read and write every table"
                if not missing
                else "missing " + "; ".join(missing) + " -> GRANT them to the role in DATABASE_URL",
            )
        ]
        app_db = self._profile_database()
        if app_db is not None and self.settings.split:
            checks.extend(layout.checks(app_db))
        auth_db = next((db for db, sets in self.plan if "auth" in sets), None)
        if auth_db is not None:
            names = [
                r["tgname"]
                for r in auth_db.fetchall(
                    "SELECT tgname FROM pg_trigger WHERE tgrelid = 'auth.users'::regclass "
                    "AND NOT tgisinternal"
                )
            ]
            checks.append(
                (
                    "triggers",
                    not names,
                    "no triggers on auth.users"
                    if not names
                    else f"triggers on auth.users ({', '.join(names)}) may create profiles "
                    "themselves and collide with the signup saga's insert -> drop them; "
                    "authsvc writes the profile",
                )
            )
        return checks
