"""PostgresStore: identities in auth.users, profiles in public.users, through psycopg 3.

One database (the default) or two (AUTH_DATABASE_URL differs from DATABASE_URL). The signup
unit hides the difference from the saga: in one database the identity and the profile are
written in one transaction and compensation is a rollback; across two, each write commits on
its own and compensation deletes what was written.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.rows import scalar_row, tuple_row
from psycopg.types.json import Jsonb

from authsvc.config import Settings
from authsvc.errors import AuthError, DatabaseUnavailable, StorageError
from authsvc.passwords import Hasher
from authsvc.stores import COMPLETE, PENDING, Drift, Identity, NewProfile, Profile, recreate_profile
from authsvc.stores.pg import Database, apply_migrations, migration_status, translate
from authsvc.stores.pg_sessions import PgSessions

log = logging.getLogger("authsvc.stores.postgres")

IDENTITY_COLUMNS = (
    "id, email, password_hash, is_anonymous, email_confirmed_at, banned_until, "
    "signup_state, created_at"
)
PROFILE_COLUMNS = "id, email, username, display_name, created_at, updated_at"
PROFILE_FIELDS = ("username", "display_name")
REPAIR_BATCH = 500
SCAN_BATCH = 10000


def _identity(row: dict[str, Any] | None) -> Identity | None:
    return Identity(**row) if row else None


def _profile(row: dict[str, Any] | None) -> Profile | None:
    return Profile(**{k: row[k] for k in Profile.__dataclass_fields__}) if row else None


INSERT_PROFILE = (
    "INSERT INTO public.users (id, email, username, display_name) VALUES (%s, %s, %s, %s) "
    f"RETURNING {PROFILE_COLUMNS}"
)


class _SignupUnit:
    """The writes of one signup; see the module docstring for how compensation works."""

    def __init__(self, store: PostgresStore, user_id: UUID) -> None:
        self.store = store
        self.user_id = user_id
        self.split = store.split
        self._conn: psycopg.Connection | None = None
        self._identity_written = False
        self._profile_attempted = False
        self._commit_sent = False
        self._finished = False

    # -- context ------------------------------------------------------------------------------

    def __enter__(self) -> _SignupUnit:
        if not self.split:
            self._conn = self.store.auth_db.getconn()
            try:
                self._conn.execute("BEGIN")
            except psycopg.Error as exc:
                self._release()
                raise DatabaseUnavailable(database=self.store.auth_db.name) from exc
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if not self._finished:
            self.compensate()
        self._release()

    def _release(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            self.store.auth_db.putconn(conn)

    # -- steps --------------------------------------------------------------------------------

    def create_identity(self, email: str, password_hash: str, metadata: dict[str, Any]) -> None:
        query = (
            "INSERT INTO auth.users (id, email, password_hash, raw_user_meta_data, signup_state) "
            "VALUES (%s, %s, %s, %s, %s)"
        )
        params = (self.user_id, email, password_hash, Jsonb(metadata), PENDING)
        if self.split:
            self._identity_written = True  # a commit whose answer is lost may still have landed
            try:
                written = self.store.auth_db.execute(query, params)
            except DatabaseUnavailable as exc:
                self._identity_written = exc.sent
                raise
        else:
            written = self._run(query, params).rowcount
            self._identity_written = True
        if written != 1:
            # Without this, the saga would go on to write a profile for an identity that does
            # not exist (and in two databases nothing else would stop it).
            raise StorageError(
                "no_row_written",
                "the identity insert wrote no row: a BEFORE INSERT trigger on auth.users "
                "returning NULL (or a rule) dropped it",
            )

    def insert_profile(self, profile: NewProfile) -> Profile | None:
        params = (profile.id, profile.email, profile.username, profile.display_name)
        self._profile_attempted = True
        if self.split:
            try:
                return _profile(self.store.app_db.fetchone(INSERT_PROFILE, params))
            except DatabaseUnavailable as exc:
                self._profile_attempted = exc.sent
                raise
        return _profile(self._run(INSERT_PROFILE, params).fetchone())

    def complete(self) -> None:
        mark = (
            "UPDATE auth.users SET signup_state = 'complete', updated_at = now() "
            "WHERE id = %s AND signup_state = 'pending'"
        )
        if self.split:
            marked = self.store.auth_db.execute(mark, (self.user_id,))
        else:
            marked = self._run(mark, (self.user_id,)).rowcount
        if marked != 1:
            # Only a pending identity that is still there may answer 201. Across two databases
            # nothing locks it: `authsvc reconcile --repair` with a grace period shorter than
            # this signup may have removed it meanwhile.
            raise StorageError(
                "identity_missing",
                "the pending identity was gone when the signup came to complete it (removed "
                "by `authsvc reconcile --repair` or by hand, or a trigger skipped the update)",
            )
        if not self.split:
            self._commit_sent = True
            try:
                self._conn.execute("COMMIT")  # type: ignore[union-attr]
            except psycopg.Error as exc:
                # Whether the commit landed is unknown; compensation deletes by id either way.
                raise translate(exc) from exc
        self._finished = True

    def compensate(self) -> bool:
        """Undo this signup's writes; True when nothing of it remains."""
        self._finished = True
        if not self.split:
            try:
                self._conn.execute("ROLLBACK")  # type: ignore[union-attr]
                return True
            except psycopg.Error:
                # The connection died: the server rolls an open transaction back by itself,
                # unless it died during COMMIT. Deleting by id settles that case too.
                if not self._commit_sent:
                    return True
                return self._delete_everywhere()
        return self._delete_everywhere()

    def _delete_everywhere(self) -> bool:
        ok = True
        if self._profile_attempted and self.split:
            try:
                self.store.app_db.execute("DELETE FROM public.users WHERE id = %s", (self.user_id,))
            except AuthError as exc:
                ok = False
                log.error(
                    "compensation could not delete the profile",
                    extra={"user_id": str(self.user_id), "error": repr(exc)},
                )
        if self._identity_written:
            try:
                # Only a pending identity is ours to remove; a complete one belongs to a
                # signup that was answered with success.
                self.store.auth_db.execute(
                    "DELETE FROM auth.users WHERE id = %s AND signup_state = 'pending'",
                    (self.user_id,),
                )
            except AuthError as exc:
                ok = False
                log.error(
                    "compensation could not delete the identity; it stays pending and "
                    "`authsvc reconcile --repair` removes it",
                    extra={"user_id": str(self.user_id), "error": repr(exc)},
                )
        return ok

    def _run(self, query: str, params: Any) -> psycopg.Cursor:
        assert self._conn is not None
        try:
            return self._conn.execute(query, params)
        except psycopg.Error as exc:
            raise translate(exc) from exc


class PostgresStore(PgSessions):
    backend = "postgres"

    def __init__(self, settings: Settings, hasher: Hasher) -> None:
        if not settings.database_url:
            raise ValueError("PostgresStore needs a database URL")
        options = {
            "connect_timeout": settings.connect_timeout,
            "pool_timeout": settings.pool_timeout,
            "max_size": settings.pool_max_size,
            "statement_timeout_ms": settings.statement_timeout_ms,
            "pooler": settings.db_pooler,
        }
        self.hasher = hasher
        self.split = settings.split
        if self.split:
            self.auth_db = Database(settings.auth_database_url or "", "auth_database", **options)
            self.app_db = Database(settings.database_url, "database", **options)
        else:
            self.auth_db = self.app_db = Database(settings.database_url, "database", **options)
        self.sessions_db = self.auth_db

    # -- lifecycle ----------------------------------------------------------------------------

    def _databases(self) -> list[Database]:
        return [self.auth_db, self.app_db] if self.split else [self.auth_db]

    def open(self) -> None:
        for db in self._databases():
            db.open()

    def close(self) -> None:
        for db in self._databases():
            db.close()

    def check(self) -> dict[str, str]:
        return {db.name: db.ping() for db in self._databases()}

    def _migration_plan(self) -> list[tuple[Database, list[str]]]:
        if self.split:
            return [(self.auth_db, ["auth", "sessions"]), (self.app_db, ["app"])]
        return [(self.auth_db, ["auth", "sessions", "app"])]

    def migrate(self) -> list[str]:
        applied: list[str] = []
        for db, sets in self._migration_plan():
            applied.extend(apply_migrations(db, sets))
        return applied

    def migration_status(self) -> dict[str, Any]:
        status = {db.name: migration_status(db, sets) for db, sets in self._migration_plan()}
        latest = [s["latest"] for s in status.values() if s["latest"]]
        return {
            "databases": status,
            "pending": [m for s in status.values() for m in s["pending"]],
            "schema_version": max(latest) if latest else None,
        }

    def diagnose(self) -> list[tuple[str, bool, str]]:
        """Privileges of the connecting role on each table, and triggers that fight the saga."""
        needed = [
            (self.auth_db, "auth.users"),
            (self.auth_db, "authsvc.sessions"),
            (self.auth_db, "authsvc.refresh_tokens"),
            (self.auth_db, "authsvc.idempotency_keys"),
            (self.app_db, "public.users"),
        ]
        missing = []
        for db, table in needed:
            row = db.fetchone(
                "SELECT current_user AS role, "
                "has_table_privilege(%s, 'SELECT,INSERT,UPDATE,DELETE') AS ok",
                (table,),
            )
            if row and not row["ok"]:
                missing.append(f"{row['role']} on {table}")
        checks = [
            (
                "roles",
                not missing,
                "the database role can read and write every table"
                if not missing
                else "missing SELECT/INSERT/UPDATE/DELETE for "
                + "; ".join(missing)
                + " -> GRANT them to the role in DATABASE_URL",
            )
        ]
        triggers = self.auth_db.fetchall(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = 'auth.users'::regclass "
            "AND NOT tgisinternal"
        )
        names = [t["tgname"] for t in triggers]
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

    # -- signup -------------------------------------------------------------------------------

    def signup(self, user_id: UUID) -> _SignupUnit:
        return _SignupUnit(self, user_id)

    # -- identities and profiles --------------------------------------------------------------

    def find_identity_by_email(self, email: str) -> Identity | None:
        return _identity(
            self.auth_db.fetchone(
                f"SELECT {IDENTITY_COLUMNS} FROM auth.users WHERE lower(email) = lower(%s)",
                (email,),
            )
        )

    def get_identity(self, user_id: UUID) -> Identity | None:
        return _identity(
            self.auth_db.fetchone(
                f"SELECT {IDENTITY_COLUMNS} FROM auth.users WHERE id = %s", (user_id,)
            )
        )

    def authenticate(self, email: str, password: str) -> Identity | None:
        identity = self.find_identity_by_email(email)
        stored = identity.password_hash if identity else None
        if not self.hasher.verify(stored, password):  # a dummy hash when there is no user
            return None
        assert identity is not None and stored is not None
        if self.hasher.needs_rehash(stored):
            # The cost parameters changed since this hash was made: upgrade it now that we
            # hold the plain password. Losing this race to a concurrent login is harmless.
            self.auth_db.execute(
                "UPDATE auth.users SET password_hash = %s, updated_at = now() "
                "WHERE id = %s AND password_hash = %s",
                (self.hasher.hash(password), identity.id, stored),
            )
        return identity

    def record_sign_in(self, user_id: UUID) -> None:
        self.auth_db.execute(
            "UPDATE auth.users SET last_sign_in_at = now() WHERE id = %s", (user_id,)
        )

    def get_profile(self, user_id: UUID) -> Profile | None:
        return _profile(
            self.app_db.fetchone(
                f"SELECT {PROFILE_COLUMNS} FROM public.users WHERE id = %s", (user_id,)
            )
        )

    def insert_profile(self, profile: NewProfile) -> Profile | None:
        return _profile(
            self.app_db.fetchone(
                INSERT_PROFILE,
                (profile.id, profile.email, profile.username, profile.display_name),
            )
        )

    def update_profile(self, user_id: UUID, changes: dict[str, Any]) -> Profile | None:
        columns = [c for c in PROFILE_FIELDS if c in changes]
        if not columns:
            return self.get_profile(user_id)
        assignments = sql.SQL(", ").join(
            sql.SQL("{} = {}").format(sql.Identifier(c), sql.Placeholder()) for c in columns
        )
        query = sql.SQL(
            "UPDATE public.users SET {}, updated_at = now() WHERE id = %s RETURNING "
            + PROFILE_COLUMNS
        ).format(assignments)
        return _profile(self.app_db.fetchone(query, [changes[c] for c in columns] + [user_id]))

    # -- reconcile ----------------------------------------------------------------------------

    def find_drift(self, grace_seconds: int, id_limit: int = 1000) -> Drift:
        drift = Drift()
        for kind, user_id in self._drift_rows(grace_seconds):
            count_attr = f"{kind}_count"
            setattr(drift, count_attr, getattr(drift, count_attr) + 1)
            ids = getattr(drift, kind)
            if len(ids) < id_limit:
                ids.append(user_id)
        return drift

    def _drift_rows(self, grace_seconds: int) -> Iterator[tuple[str, UUID]]:
        """(kind, id) for every drifted row, set-based in one database, batched across two."""
        if not self.split:
            rows = self.auth_db.fetchall(
                """
                SELECT 'identities_without_profile' AS kind, u.id FROM auth.users u
                 WHERE u.created_at < now() - make_interval(secs => %(grace)s)
                   AND NOT EXISTS (SELECT 1 FROM public.users p WHERE p.id = u.id)
                UNION ALL
                SELECT 'unfinished_with_profile', u.id FROM auth.users u
                 WHERE u.signup_state = 'pending'
                   AND u.created_at < now() - make_interval(secs => %(grace)s)
                   AND EXISTS (SELECT 1 FROM public.users p WHERE p.id = u.id)
                UNION ALL
                SELECT 'profiles_without_identity', p.id FROM public.users p
                 WHERE p.created_at < now() - make_interval(secs => %(grace)s)
                   AND NOT EXISTS (SELECT 1 FROM auth.users u WHERE u.id = p.id)
                """,
                {"grace": grace_seconds},
            )
            for row in rows:
                yield row["kind"], row["id"]
            return
        # Two databases: walk each side's ids in key order, a batch at a time, and read the
        # other side's ids over the same key range (an index range scan on each side, nothing
        # shipped back and forth but ids, as tuples): a merge join across the two databases.
        for batch, low in self._scan(self.auth_db, "auth.users", grace_seconds, with_state=True):
            present = self._ids_between(self.app_db, "public.users", low, batch[-1][0])
            for user_id, state in batch:
                if user_id not in present:
                    yield "identities_without_profile", UUID(user_id)
                elif state == PENDING:
                    yield "unfinished_with_profile", UUID(user_id)
        for batch, low in self._scan(self.app_db, "public.users", grace_seconds, with_state=False):
            present = self._ids_between(self.auth_db, "auth.users", low, batch[-1][0])
            for (user_id,) in batch:
                if user_id not in present:
                    yield "profiles_without_identity", UUID(user_id)

    @staticmethod
    def _scan(
        db: Database, table: str, grace_seconds: int, with_state: bool
    ) -> Iterator[tuple[list[tuple[Any, ...]], str | None]]:
        """(batch, the id the batch starts after) over the rows older than the grace period,
        in id order. Ids come as text: a million UUID objects cost more than the scan."""
        # Not "id::text" bare: its output column would be called id, and ORDER BY id would
        # then sort the text, by a sequential scan, instead of walking the primary key.
        columns = "id::text AS key, signup_state" if with_state else "id::text AS key"
        template = (
            "SELECT {cols} FROM {table} WHERE created_at < now() - make_interval(secs => %s) "
            "{after} ORDER BY id LIMIT %s"
        )
        first, following = (
            sql.SQL(template).format(
                cols=sql.SQL(columns),
                table=sql.Identifier(*table.split(".")),
                after=sql.SQL(after),
            )
            for after in ("", "AND id > %s::uuid")
        )
        last: str | None = None
        while True:
            if last is None:
                batch = db.fetchall(first, (grace_seconds, SCAN_BATCH), row_factory=tuple_row)
            else:
                batch = db.fetchall(
                    following, (grace_seconds, last, SCAN_BATCH), row_factory=tuple_row
                )
            if not batch:
                return
            yield batch, last
            last = batch[-1][0]

    @staticmethod
    def _ids_between(db: Database, table: str, low: str | None, high: str) -> set[str]:
        """The ids of `table` in (low, high], whatever their age, as text."""
        name = sql.Identifier(*table.split("."))
        if low is None:
            query = sql.SQL("SELECT id::text FROM {} WHERE id <= %s::uuid").format(name)
            params: tuple[Any, ...] = (high,)
        else:
            query = sql.SQL(
                "SELECT id::text FROM {} WHERE id > %s::uuid AND id <= %s::uuid"
            ).format(name)
            params = (low, high)
        return set(db.fetchall(query, params, row_factory=scalar_row))

    @staticmethod
    def _present(db: Database, table: str, ids: list[UUID]) -> set[UUID]:
        query = sql.SQL("SELECT id FROM {} WHERE id = ANY(%s)").format(
            sql.Identifier(*table.split("."))
        )
        return {r["id"] for r in db.fetchall(query, (ids,))}

    def repair_drift(self, grace_seconds: int) -> dict[str, int]:
        """Give back what was acknowledged, remove what was not; every action is logged.

        A complete identity was answered 201: it gets its missing profile back. A pending one
        never was (the 201 comes only after `complete()`): its client was told the signup failed,
        or got no answer at all, so it is removed together with any profile it has. Completing
        it instead would hand an account to a client that was told there is none.
        """
        drift = self.find_drift(grace_seconds, id_limit=10**12)
        repaired = {"profiles_created": 0, "identities_removed": 0, "profiles_removed": 0}
        for batch in _batches(drift.unfinished_with_profile + drift.identities_without_profile):
            self._repair_identities(batch, grace_seconds, repaired)
        for batch in _batches(drift.profiles_without_identity):
            n = self._remove_orphan_profiles(batch, grace_seconds)
            repaired["profiles_removed"] += n
        return repaired

    def _repair_identities(
        self, batch: list[UUID], grace_seconds: int, repaired: dict[str, int]
    ) -> None:
        # Pending identities never got their 201: remove them, with their profiles. SKIP LOCKED
        # leaves alone a row that a signup in flight still holds (one database; across two a
        # signup whose identity goes fails at its `complete` step instead).
        removed = self.auth_db.fetchall(
            """
            DELETE FROM auth.users WHERE id IN (
                SELECT id FROM auth.users
                 WHERE id = ANY(%s) AND signup_state = 'pending'
                   AND created_at < now() - make_interval(secs => %s)
                 FOR UPDATE SKIP LOCKED)
            RETURNING id
            """,
            (batch, grace_seconds),
        )
        if removed:
            ids = [r["id"] for r in removed]
            # Across two databases nothing cascades; in one, the foreign key's ON DELETE
            # CASCADE has already taken them, unless the key was dropped.
            profiles = self.app_db.execute("DELETE FROM public.users WHERE id = ANY(%s)", (ids,))
            repaired["identities_removed"] += len(ids)
            log.warning(
                "reconcile removed identities whose signup never finished",
                extra={
                    "count": len(ids),
                    "ids": [str(i) for i in ids],
                    "profiles_deleted_with_them": profiles,
                },
            )
        # Complete identities were answered 201: give each its profile back.
        complete = self.auth_db.fetchall(
            "SELECT id, email, raw_user_meta_data FROM auth.users "
            "WHERE id = ANY(%s) AND signup_state = 'complete'",
            (batch,),
        )
        for row in complete:
            if recreate_profile(self, row["id"], row["email"], row["raw_user_meta_data"]):
                repaired["profiles_created"] += 1
                log.warning(
                    "reconcile recreated a missing profile", extra={"user_id": str(row["id"])}
                )

    def _remove_orphan_profiles(self, batch: list[UUID], grace_seconds: int) -> int:
        if self.split:
            # Re-check against the identity database right before deleting.
            present = self._present(self.auth_db, "auth.users", batch)
            batch = [i for i in batch if i not in present]
            if not batch:
                return 0
            rows = self.app_db.fetchall(
                "DELETE FROM public.users WHERE id IN (SELECT id FROM public.users "
                "WHERE id = ANY(%s) AND created_at < now() - make_interval(secs => %s) "
                "FOR UPDATE SKIP LOCKED) RETURNING id",
                (batch, grace_seconds),
            )
        else:
            rows = self.app_db.fetchall(
                "DELETE FROM public.users WHERE id IN (SELECT p.id FROM public.users p "
                "WHERE p.id = ANY(%s) AND NOT EXISTS (SELECT 1 FROM auth.users u "
                "WHERE u.id = p.id) FOR UPDATE SKIP LOCKED) RETURNING id",
                (batch,),
            )
        if rows:
            log.warning(
                "reconcile removed profiles without an identity",
                extra={"count": len(rows), "ids": [str(r["id"]) for r in rows]},
            )
        return len(rows)


def _batches(ids: list[UUID]) -> Iterator[list[UUID]]:
    for start in range(0, len(ids), REPAIR_BATCH):
        yield ids[start : start + REPAIR_BATCH]


__all__ = ["PostgresStore", "COMPLETE"]
