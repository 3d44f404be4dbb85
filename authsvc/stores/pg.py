"""Postgres plumbing shared by the stores: pools, the one error translation point, migrations."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from typing import Any

import psycopg
from psycopg import errors as pgerr
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from authsvc.config import ConfigError
from authsvc.errors import AuthError, DatabaseUnavailable, EmailTaken, StorageError, UsernameTaken

log = logging.getLogger("authsvc.stores")

# Unique indexes whose violation is the client's doing, by name.
_UNIQUE_TO_ERROR: dict[str, type[AuthError]] = {
    "users_email_lower_key": EmailTaken,
    "users_username_key": UsernameTaken,
}

# SQLSTATE class/condition -> the stable reason word in SIGNUP_FAILED details.
_REASONS: list[tuple[type[Exception], str, str | None]] = [
    (
        pgerr.ForeignKeyViolation,
        "foreign_key_violation",
        "the profile's id must be an existing identity",
    ),
    (
        pgerr.UniqueViolation,
        "unique_violation",
        "a row with this key already exists (a trigger that creates profiles?)",
    ),
    (pgerr.CheckViolation, "check_violation", "a CHECK constraint on the table refused the row"),
    (pgerr.NotNullViolation, "not_null_violation", "a NOT NULL column received no value"),
    (
        pgerr.InsufficientPrivilege,
        "permission_denied",
        "the database role lacks a privilege or a row-level security policy refused the row",
    ),
    (pgerr.UndefinedTable, "undefined_table", "a table is missing: run `authsvc migrate`"),
    (pgerr.InvalidSchemaName, "undefined_schema", "a schema is missing: run `authsvc migrate`"),
    (pgerr.UndefinedColumn, "undefined_column", "a column is missing: run `authsvc migrate`"),
    (pgerr.QueryCanceled, "statement_timeout", "the database took too long to answer"),
    (
        pgerr.LockNotAvailable,
        "lock_timeout",
        "a row was locked by another transaction for too long",
    ),
    (
        pgerr.SerializationFailure,
        "serialization_failure",
        "a concurrent transaction conflicted; retry",
    ),
    (pgerr.DeadlockDetected, "deadlock_detected", "a concurrent transaction conflicted; retry"),
    (pgerr.RaiseException, "trigger_raised", "a trigger on the table raised an error"),
    (pgerr.ReadOnlySqlTransaction, "read_only", "the database is read-only (a replica?)"),
    (pgerr.DataError, "invalid_data", "the database refused a value"),
]


def translate(exc: BaseException, database: str = "database") -> AuthError:
    """The AuthError for a driver exception; the one place psycopg errors are interpreted."""
    if isinstance(exc, AuthError):
        return exc
    if isinstance(exc, pgerr.UniqueViolation):
        name = exc.diag.constraint_name or ""
        if name in _UNIQUE_TO_ERROR:
            return _UNIQUE_TO_ERROR[name]()
    if isinstance(exc, PoolTimeout | PoolClosed):
        return DatabaseUnavailable(database=database)
    if isinstance(exc, pgerr.AdminShutdown | pgerr.CrashShutdown | pgerr.CannotConnectNow):
        return StorageError("connection_lost", "the database connection was closed mid-request")
    if isinstance(exc, psycopg.OperationalError) and not isinstance(
        exc, psycopg.errors.QueryCanceled
    ):
        # Connection refused, reset, or lost mid-query.
        if isinstance(exc, psycopg.errors.ConnectionException) or exc.sqlstate is None:
            return StorageError("connection_lost", "the database connection was lost mid-request")
    for cls, reason, hint in _REASONS:
        if isinstance(exc, cls):
            return StorageError(reason, hint)
    if isinstance(exc, psycopg.Error):
        sqlstate = getattr(exc, "sqlstate", None)
        return StorageError(f"database_error_{sqlstate}" if sqlstate else "database_error")
    return StorageError("unexpected_error")


def is_connection_error(exc: BaseException) -> bool:
    err = (
        exc
        if isinstance(exc, StorageError)
        else translate(exc)
        if isinstance(exc, Exception)
        else None
    )
    return isinstance(err, StorageError) and err.reason == "connection_lost"


class Database:
    """One Postgres database behind a lazily opened pool (opened after a fork, never before)."""

    def __init__(
        self,
        url: str,
        name: str,
        *,
        connect_timeout: int = 3,
        pool_timeout: float = 5.0,
        max_size: int = 10,
        statement_timeout_ms: int = 15000,
        pooler: str = "none",
    ) -> None:
        self.url = url
        self.name = name
        self._kwargs: dict[str, Any] = {
            "connect_timeout": connect_timeout,
            "application_name": "authsvc",
            "autocommit": True,
            "row_factory": dict_row,
        }
        # Behind a transaction-mode pooler (PgBouncer, Supavisor; AUTHSVC_DB_POOLER=transaction)
        # each transaction may run on another server connection, so nothing may rely on the
        # session: no `options` startup parameter (PgBouncer refuses the connection with
        # "unsupported startup parameter: options"; the statement timeout is then a server-side
        # setting, ALTER ROLE ... SET statement_timeout, which `authsvc doctor` checks), no
        # server-side prepared statements (psycopg prepares a query on its 5th run; the next
        # transaction elsewhere fails with 'prepared statement "_pg3_0" does not exist'), and
        # no session advisory lock (_migration_lock refuses). A direct connection keeps the
        # startup parameter: it costs no round trip.
        self.transaction_pooler = pooler == "transaction"
        if self.transaction_pooler:
            self._kwargs["prepare_threshold"] = None
        elif statement_timeout_ms:
            self._kwargs["options"] = f"-c statement_timeout={statement_timeout_ms}"
        self._pool_timeout = pool_timeout
        self._max_size = max_size
        self._pool: ConnectionPool | None = None
        self._lock = threading.Lock()

    def open(self) -> ConnectionPool:
        with self._lock:
            if self._pool is None:
                self._pool = ConnectionPool(
                    self.url,
                    min_size=1,
                    max_size=self._max_size,
                    kwargs=self._kwargs,
                    timeout=self._pool_timeout,
                    # No `check=`: getconn() below checks each connection before handing it
                    # out, without the pool's back-off sleeps.
                    reconnect_timeout=0,
                    max_idle=300,
                    name=f"authsvc-{self.name}",
                    open=False,
                )
                self._pool.open(wait=False)
            return self._pool

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.close(timeout=2)
                self._pool = None

    def getconn(self, timeout: float | None = None) -> psycopg.Connection:
        """A live pooled connection, or DatabaseUnavailable (sent=False) after `timeout`
        (default: the pool time-out). Give it back with putconn().

        A connection the server dropped while it sat in the pool (a restart,
        pg_terminate_backend) is thrown away at once and the next one tried, so recovery needs
        no restart of ours. psycopg_pool's own `check=` would sleep a growing back-off (1 s,
        2 s, ...) after each dead connection: with two of them a request times out although
        the server is back.
        """
        pool = self._pool or self.open()
        deadline = time.monotonic() + (self._pool_timeout if timeout is None else timeout)
        while True:
            try:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise PoolTimeout(f"no connection after {self._pool_timeout} s")
                conn = pool.getconn(timeout=remaining)
            except (PoolTimeout, PoolClosed) as exc:
                raise DatabaseUnavailable(database=self.name, sent=False) from exc
            try:
                ConnectionPool.check_connection(conn)
            except psycopg.Error:
                pool.putconn(conn)  # closed: the pool discards it and opens a replacement
                continue
            return conn

    def putconn(self, conn: psycopg.Connection) -> None:
        if self._pool is not None:
            self._pool.putconn(conn)
        else:
            conn.close()

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A pooled connection in autocommit mode; driver errors leave as AuthErrors."""
        conn = self.getconn()
        try:
            yield conn
        except AuthError:
            raise
        except psycopg.Error as exc:
            err = translate(exc, self.name)
            if isinstance(err, StorageError) and err.reason == "connection_lost":
                raise DatabaseUnavailable(database=self.name) from exc
            raise err from exc
        finally:
            self.putconn(conn)

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection]:
        with self.connection() as conn, conn.transaction():
            yield conn

    def fetchone(self, sql: str, params: Any = None) -> dict[str, Any] | None:
        with self.connection() as conn:
            return conn.execute(sql, params).fetchone()

    def fetchall(self, sql: str, params: Any = None, row_factory: Any = None) -> list[Any]:
        """Rows as dicts, or as `row_factory` makes them (tuples are cheaper for big scans)."""
        with self.connection() as conn:
            cursor = conn.cursor(row_factory=row_factory) if row_factory else conn.cursor()
            return cursor.execute(sql, params).fetchall()

    def execute(self, sql: str, params: Any = None) -> int:
        with self.connection() as conn:
            return conn.execute(sql, params).rowcount

    def ping(self, timeout: float = 2.0) -> str:
        """'ok', or a short sentence on why this database cannot be used (answers quickly)."""
        try:
            conn = self.getconn(timeout=min(timeout, self._pool_timeout))
        except DatabaseUnavailable:
            return "unreachable"
        try:
            conn.execute("SELECT 1")
            return "ok"
        except psycopg.OperationalError:
            return "unreachable"
        except psycopg.Error as exc:
            return f"error: {translate(exc).message}"
        finally:
            self.putconn(conn)

    def connect_direct(self, **extra: Any) -> psycopg.Connection:
        """A connection outside the pool (migrations, CLI), with the same time-outs."""
        kwargs = {**self._kwargs, **extra}
        try:
            return psycopg.connect(self.url, **kwargs)
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailable(database=self.name) from exc


# ---------------------------------------------------------------------------------------------
# Migrations, run by yoyo-migrations. Each database gets the sets it holds: the identity
# database "auth" then "sessions", the profile database "app". In one database, all three in
# that order, so the profile's foreign key finds auth.users.

# yoyo's bookkeeping tables live in our own schema, whatever the role's search_path says.
META_SCHEMA = "authsvc"
MIGRATION_TABLE = "_yoyo_migration"
_ADVISORY_LOCK_KEY = 0x61757468737663  # "authsvc"


def migrations_dir(name: str) -> str:
    return str(resources.files("authsvc").joinpath("stores", "migrations", name))


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
        if exc.reason in ("undefined_table", "undefined_schema"):
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


# ---------------------------------------------------------------------------------------------
# `authsvc doctor`'s look at how connections behave across transactions, the way a
# transaction-mode pooler breaks them.

_PROBE = (
    "SELECT pg_backend_pid() AS pid, current_user AS role, setting::int AS timeout_ms "
    "FROM pg_settings WHERE name = 'statement_timeout'"
)


def probe_transactions(db: Database) -> dict[str, Any]:
    """Two transactions in a row on one connection made the way the service makes them, with
    another connection's transaction in between (a pooler hands that one the server connection
    the first just gave back, so the second transaction lands elsewhere). The first prepares its
    statement as psycopg would on its fifth run; the second reuses it.

    Returns {"backends": (pid, pid) or None, "role", "timeout_ms" (the server's
    statement_timeout as the service sees it), "error": None or the driver's message}.
    """
    found: dict[str, Any] = {"backends": None, "role": None, "timeout_ms": None, "error": None}
    conns: list[psycopg.Connection] = []
    try:
        first = db.connect_direct()
        conns.append(first)
        with first.transaction():
            row = first.execute(_PROBE, prepare=True).fetchone()
        second = db.connect_direct()
        conns.append(second)
        with second.transaction():
            second.execute("SELECT 1")
            with first.transaction():
                again = first.execute(_PROBE, prepare=True).fetchone()
        found.update(backends=(row["pid"], again["pid"]), role=row["role"],
                     timeout_ms=again["timeout_ms"])
    except DatabaseUnavailable as exc:
        found["error"] = str(exc.__cause__ or exc.message).strip()
    except psycopg.Error as exc:
        found["error"] = str(exc).strip()
    finally:
        for conn in conns:
            conn.close()
    return found
