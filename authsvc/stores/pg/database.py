"""One Postgres database behind a pool, and the one place psycopg's errors are interpreted."""

from __future__ import annotations

import logging
import select
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pgerr
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from authsvc.errors import (
    AuthError,
    DatabaseUnavailable,
    EmailTaken,
    Reason,
    StorageError,
    UsernameTaken,
)
from authsvc.stores.pg.timestamps import ADAPTERS

log = logging.getLogger("authsvc.stores")

# Unique indexes whose violation is the client's doing, by name.
_UNIQUE_TO_ERROR: dict[str, type[AuthError]] = {
    "users_email_lower_key": EmailTaken,
    "users_username_key": UsernameTaken,
}

# SQLSTATE class/condition -> the reason in SIGNUP_FAILED's details, and a hint.
_REASONS: list[tuple[type[Exception], Reason, str | None]] = [
    (
        pgerr.ForeignKeyViolation,
        Reason.FOREIGN_KEY_VIOLATION,
        "the profile's id must be an existing identity",
    ),
    (
        pgerr.UniqueViolation,
        Reason.UNIQUE_VIOLATION,
        "a row with this key already exists (a trigger that creates profiles?)",
    ),
    (
        pgerr.CheckViolation,
        Reason.CHECK_VIOLATION,
        "a CHECK constraint on the table refused the row",
    ),
    (pgerr.NotNullViolation, Reason.NOT_NULL_VIOLATION, "a NOT NULL column received no value"),
    (
        pgerr.InsufficientPrivilege,
        Reason.PERMISSION_DENIED,
        "the database role lacks a privilege or a row-level security policy refused the row",
    ),
    (pgerr.UndefinedTable, Reason.UNDEFINED_TABLE, "a table is missing: run `authsvc migrate`"),
    (
        pgerr.InvalidSchemaName,
        Reason.UNDEFINED_SCHEMA,
        "a schema is missing: run `authsvc migrate`",
    ),
    (pgerr.UndefinedColumn, Reason.UNDEFINED_COLUMN, "a column is missing: run `authsvc migrate`"),
    (pgerr.QueryCanceled, Reason.STATEMENT_TIMEOUT, "the database took too long to answer"),
    (
        pgerr.LockNotAvailable,
        Reason.LOCK_TIMEOUT,
        "a row was locked by another transaction for too long",
    ),
    (
        pgerr.SerializationFailure,
        Reason.SERIALIZATION_FAILURE,
        "a concurrent transaction conflicted; retry",
    ),
    (
        pgerr.DeadlockDetected,
        Reason.DEADLOCK_DETECTED,
        "a concurrent transaction conflicted; retry",
    ),
    (pgerr.RaiseException, Reason.TRIGGER_RAISED, "a trigger on the table raised an error"),
    (pgerr.ReadOnlySqlTransaction, Reason.READ_ONLY, "the database is read-only (a replica?)"),
    (pgerr.DataError, Reason.INVALID_DATA, "the database refused a value"),
]


def _connection_lost(exc: BaseException) -> bool:
    """The connection went away (closed, reset, server shut down): not a statement's fault."""
    if isinstance(exc, pgerr.AdminShutdown | pgerr.CrashShutdown | pgerr.CannotConnectNow):
        return True
    return (
        isinstance(exc, psycopg.OperationalError)
        and not isinstance(exc, pgerr.QueryCanceled)
        and (isinstance(exc, pgerr.ConnectionException) or exc.sqlstate is None)
    )


def translate(exc: BaseException, database: str = "database") -> AuthError:
    """The AuthError for a driver exception; the one place psycopg errors are interpreted.

    A lost connection is DatabaseUnavailable (sent: the statement may have run); no connection
    at all (pool time-out) is DatabaseUnavailable with sent=False.
    """
    if isinstance(exc, AuthError):
        return exc
    if isinstance(exc, PoolTimeout | PoolClosed):
        return DatabaseUnavailable(database=database, sent=False)
    if (getattr(exc, "sqlstate", None) or "").startswith("08"):
        # An answer of class 08 (connection exception) comes from a pooler that could not
        # give the statement a server ("server login has been failing", "query_wait_timeout",
        # "no more connections allowed"): it never ran. Except when PgBouncer's server died
        # under it ("server conn crashed?"): then it may have.
        if "server conn crashed" in str(exc):
            return DatabaseUnavailable(database=database, sent=True, lost=True)
        return DatabaseUnavailable(database=database, sent=False)
    if _connection_lost(exc):
        return DatabaseUnavailable(database=database, sent=True, lost=True)
    if isinstance(exc, pgerr.UniqueViolation):
        name = exc.diag.constraint_name or ""
        if name in _UNIQUE_TO_ERROR:
            return _UNIQUE_TO_ERROR[name]()
    # The server answered with an error: the statement (autocommit) wrote nothing.
    sqlstate = getattr(exc, "sqlstate", None)
    for cls, reason, hint in _REASONS:
        if isinstance(exc, cls):
            return StorageError(reason, hint, sqlstate, refused=True)
    if isinstance(exc, psycopg.Error):
        return StorageError(Reason.DATABASE_ERROR, None, sqlstate, refused=sqlstate is not None)
    return StorageError(Reason.UNEXPECTED_ERROR)


def _dropped(conn: psycopg.Connection) -> bool:
    """Whether the server has given up on this idle connection, without asking it: an idle
    connection has nothing to read, so a readable socket holds the server's goodbye (a FATAL
    message on shutdown or pg_terminate_backend, or the end of the stream)."""
    if conn.closed or conn.broken:
        return True
    try:
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


# Between attempts at a statement a pooler refused before running it.
RETRY_PAUSE = 0.1
T = TypeVar("T")


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
            "context": ADAPTERS,  # timestamps past the year 9999 (and 'infinity') are read
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

    @classmethod
    def from_settings(cls, url: str, name: str, settings: Any) -> Database:
        """A database with the pool and time-outs the settings ask for."""
        return cls(
            url,
            name,
            connect_timeout=settings.connect_timeout,
            pool_timeout=settings.pool_timeout,
            max_size=settings.pool_max_size,
            statement_timeout_ms=settings.statement_timeout_ms,
            pooler=settings.db_pooler,
        )

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

    def stats(self) -> dict[str, int]:
        """The pool's numbers (psycopg_pool's get_stats()); empty while the pool is not open."""
        pool = self._pool
        return pool.get_stats() if pool is not None else {}

    def getconn(self, timeout: float | None = None) -> psycopg.Connection:
        """A live pooled connection, or DatabaseUnavailable (sent=False) after `timeout`
        (default: the pool time-out). Give it back with putconn().

        A connection the server dropped while it sat in the pool (a restart,
        pg_terminate_backend) is thrown away at once and the next one tried, so recovery needs
        no restart of ours. The check costs no round trip (_dropped): a query per checkout was
        a third of the work of a GET /me. psycopg_pool's own `check=` would also sleep a growing
        back-off (1 s, 2 s, ...) after each dead connection.
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
            if _dropped(conn):
                conn.close()
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
            raise translate(exc, self.name) from exc
        finally:
            self.putconn(conn)

    def begin(self) -> psycopg.Connection:
        """A pooled connection with a transaction open. Nothing has been done yet, so a BEGIN
        that fails on a dead connection, or is refused by a pooler that cannot reach the
        database, is tried again (_retrying). Give it back with putconn() after COMMIT or
        ROLLBACK."""

        def attempt() -> psycopg.Connection:
            conn = self.getconn()
            try:
                conn.execute("BEGIN")
            except psycopg.Error as exc:
                self.putconn(conn)
                raise translate(exc, self.name) from exc
            return conn

        return self._retrying(attempt)

    def _retrying(self, attempt: Callable[[], T], writes: bool = False) -> T:
        """`attempt()` again while it fails without having done anything: a connection found
        dead, or a statement refused before it ran; within the pool time-out, as a checkout
        waits. A time-out of the pool itself is not waited out twice. With `writes`, only a
        statement known not to have reached the server is tried again (a pooler's refusal);
        a connection lost under it leaves the outcome unknown, for the caller to read back."""
        deadline = time.monotonic() + self._pool_timeout
        tries = 0
        while True:
            tries += 1
            try:
                return attempt()
            except DatabaseUnavailable as exc:
                waited = isinstance(exc.__cause__, PoolTimeout | PoolClosed)
                if waited or time.monotonic() > deadline or (tries > 1 and exc.lost):
                    raise
                if writes and exc.sent:
                    raise
                if not exc.lost:
                    time.sleep(RETRY_PAUSE)

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection]:
        """A transaction on a pooled connection: committed when the block ends, rolled back
        when it raises."""
        conn = self.begin()
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            try:
                conn.execute("ROLLBACK")
            except psycopg.Error:
                pass  # the connection died: the server rolls back by itself
            if isinstance(exc, psycopg.Error):
                raise translate(exc, self.name) from exc
            raise
        finally:
            self.putconn(conn)

    def fetchone(self, sql: str, params: Any = None) -> dict[str, Any] | None:
        """The first row of a statement that writes: tried again only when it cannot have
        run (refused before it reached the server), never after it may have."""

        def once() -> dict[str, Any] | None:
            with self.connection() as conn:
                return conn.execute(sql, params).fetchone()

        return self._retrying(once, writes=True)

    def fetchall(self, sql: str, params: Any = None, row_factory: Any = None) -> list[Any]:
        """Rows as dicts, or as `row_factory` makes them (tuples are cheaper for big scans);
        tried again as fetchone is."""
        return self._retrying(lambda: self._fetchall(sql, params, row_factory), writes=True)

    def _fetchall(self, sql: str, params: Any, row_factory: Any) -> list[Any]:
        with self.connection() as conn:
            cursor = conn.cursor(row_factory=row_factory) if row_factory else conn.cursor()
            return cursor.execute(sql, params).fetchall()

    def read(self, sql: str, params: Any = None, row_factory: Any = None) -> list[Any]:
        """The rows of a statement that only reads, so it is safe to run twice: retried as
        BEGIN is (_retrying)."""
        return self._retrying(lambda: self._fetchall(sql, params, row_factory))

    def read_one(self, sql: str, params: Any = None) -> dict[str, Any] | None:
        rows = self.read(sql, params)
        return rows[0] if rows else None

    def execute(self, sql: str, params: Any = None) -> int:
        """The rows a statement touched; tried again as fetchone is."""

        def once() -> int:
            with self.connection() as conn:
                return conn.execute(sql, params).rowcount

        return self._retrying(once, writes=True)

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
