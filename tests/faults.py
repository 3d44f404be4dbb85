"""Faults injected through real database objects: triggers, constraints, killed backends.

Each is a context manager that creates the object and drops it again, whatever happens.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg


def _exec(url: str, sql: str, params: tuple = ()) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql, params)


@contextmanager
def trigger(url: str, table: str, body: str, when: str = "BEFORE INSERT",
            name: str = "authsvc_fault") -> Iterator[None]:
    """A row trigger on `table` running the PL/pgSQL `body`."""
    fn = f"public.{name}_fn"
    _exec(url, f"CREATE OR REPLACE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS $$ "
               f"BEGIN {body} END $$")
    _exec(url, f"CREATE TRIGGER {name} {when} ON {table} FOR EACH ROW EXECUTE FUNCTION {fn}()")
    try:
        yield
    finally:
        _exec(url, f"DROP TRIGGER IF EXISTS {name} ON {table}")
        _exec(url, f"DROP FUNCTION IF EXISTS {fn}()")


def profile_insert_raises(url: str, message: str = "profile insert refused"):
    return trigger(url, "public.users", f"RAISE EXCEPTION '{message}';")


def profile_insert_returns_null(url: str):
    """The insert 'succeeds' but writes and returns no row: the silent failure."""
    return trigger(url, "public.users", "RETURN NULL;")


def profile_email_rewritten(url: str):
    return trigger(url, "public.users", "NEW.email := 'someone-else@example.com'; RETURN NEW;")


def profile_insert_sleeps(url: str, seconds: float):
    return trigger(url, "public.users", f"PERFORM pg_sleep({seconds}); RETURN NEW;")


@contextmanager
def not_valid_check(url: str, table: str = "public.users",
                    condition: str = "false") -> Iterator[None]:
    """A CHECK constraint added NOT VALID: existing rows stay, every new row is refused."""
    _exec(url, f"ALTER TABLE {table} ADD CONSTRAINT authsvc_fault_check "
               f"CHECK ({condition}) NOT VALID")
    try:
        yield
    finally:
        _exec(url, f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS authsvc_fault_check")


@contextmanager
def revoked_insert(url: str, table: str = "public.users") -> Iterator[None]:
    """Row-level security that allows no insert for the (non-superuser) owner."""
    _exec(url, f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    _exec(url, f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
    _exec(url, f"CREATE POLICY authsvc_fault_read ON {table} FOR SELECT USING (true)")
    try:
        yield
    finally:
        _exec(url, f"DROP POLICY IF EXISTS authsvc_fault_read ON {table}")
        _exec(url, f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
        _exec(url, f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")


def terminate_service_backends(url: str) -> int:
    """pg_terminate_backend every connection of the service (application_name 'authsvc')."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'authsvc' AND pid <> pg_backend_pid()"
        ).fetchall()
    return len(rows)


@contextmanager
def terminate_when_sleeping(url: str, delay: float = 0.3) -> Iterator[None]:
    """Kill the service's backends while a statement is held open (use with a sleep trigger)."""
    timer = threading.Timer(delay, terminate_service_backends, args=(url,))
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        timer.join()
