"""Faults injected through real database objects: triggers, constraints, killed backends.

Each is a context manager that creates the object and drops it again, whatever happens.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg


def _exec(url: str, sql: str, params: tuple = ()) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql, params)


@contextmanager
def trigger(
    url: str, table: str, body: str, when: str = "BEFORE INSERT", name: str = "authsvc_fault"
) -> Iterator[None]:
    """A row trigger on `table` running the PL/pgSQL `body`."""
    fn = f"public.{name}_fn"
    _exec(
        url,
        f"CREATE OR REPLACE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS $$ "
        f"BEGIN {body} END $$",
    )
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
def not_valid_check(
    url: str, table: str = "public.users", condition: str = "false"
) -> Iterator[None]:
    """A CHECK constraint added NOT VALID: existing rows stay, every new row is refused."""
    _exec(
        url, f"ALTER TABLE {table} ADD CONSTRAINT authsvc_fault_check CHECK ({condition}) NOT VALID"
    )
    try:
        yield
    finally:
        _exec(url, f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS authsvc_fault_check")


@contextmanager
def rls_refuses_insert(url: str, table: str = "public.users") -> Iterator[None]:
    """Row-level security on `table` with a read policy and no insert policy: a role that is not
    the owner and does not bypass RLS (the service's) may read rows but insert none, as on a
    Supabase table whose policies forgot the service. Run as the table's owner."""
    _exec(url, f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    _exec(url, f"CREATE POLICY authsvc_fault_read ON {table} FOR SELECT USING (true)")
    try:
        yield
    finally:
        _exec(url, f"DROP POLICY IF EXISTS authsvc_fault_read ON {table}")
        _exec(url, f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")


@contextmanager
def revoked(url: str, privilege: str, table: str = "public.users") -> Iterator[None]:
    """`privilege` (INSERT, UPDATE, ...) on `table` revoked from every role that holds it but
    the owner (the service's role among them), and granted back afterwards. Run as the owner."""
    with psycopg.connect(url, autocommit=True) as conn:
        grantees = [
            row[0]
            for row in conn.execute(
                "SELECT DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC' "
                "ELSE quote_ident(pg_get_userbyid(a.grantee)) END "
                "FROM pg_class c, aclexplode(c.relacl) a "
                "WHERE c.oid = %s::regclass AND a.privilege_type = %s "
                "AND a.grantee <> c.relowner",
                (table, privilege.upper()),
            )
        ]
        assert grantees, f"no role but the owner holds {privilege} on {table}: nothing to revoke"
        conn.execute(f"REVOKE {privilege} ON {table} FROM {', '.join(grantees)}")
    try:
        yield
    finally:
        _exec(url, f"GRANT {privilege} ON {table} TO {', '.join(grantees)}")


def terminate_service_backends(url: str, timeout: float = 5.0) -> int:
    """pg_terminate_backend every connection of the service (application_name 'authsvc'), and
    wait until those backends are gone. pg_terminate_backend only signals: until a backend has
    exited, its connection still looks alive to the service, and a statement sent on it in that
    moment is lost with it (a kill mid-statement, which terminate_when_sleeping makes on
    purpose), not a connection the server killed."""
    with psycopg.connect(url, autocommit=True) as conn:
        pids = [
            pid
            for (pid,) in conn.execute(
                "SELECT pid FROM pg_stat_activity "
                "WHERE application_name = 'authsvc' AND pid <> pg_backend_pid()"
            ).fetchall()
        ]
        for pid in pids:
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        deadline = time.monotonic() + timeout
        while pids and time.monotonic() < deadline:
            alive = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,)
            ).fetchone()[0]
            if not alive:
                break
            time.sleep(0.01)
    return len(pids)


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


def wait_for_a_lock_wait(url: str, what: str, timeout: float = 15) -> None:
    """Until a backend of the service waits for a lock on `url`'s database (one a test holds);
    AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while not conn.execute(
            "SELECT 1 FROM pg_stat_activity WHERE application_name = 'authsvc' "
            "AND wait_event_type = 'Lock' AND datname = current_database()"
        ).fetchone():
            assert time.monotonic() < deadline, f"the {what} never waited for the lock"
            time.sleep(0.02)


def racing(
    url: str,
    hold: Callable[[psycopg.Connection], Any],
    call: Callable[[], Any],
    what: str,
    before_commit: Callable[[psycopg.Connection], Any] | None = None,
) -> Any:
    """`call()` in a thread, racing a transaction on `url`: `hold` writes or locks rows in it,
    uncommitted; once the service waits for them, `before_commit` runs (if given) and the
    transaction commits. What `call` returned."""
    answer: dict[str, Any] = {}
    with psycopg.connect(url) as held:
        hold(held)
        worker = threading.Thread(target=lambda: answer.setdefault("value", call()))
        worker.start()
        wait_for_a_lock_wait(url, what)
        if before_commit is not None:
            before_commit(held)
        held.commit()
    worker.join(timeout=15)
    assert "value" in answer, f"the {what} did not finish"
    return answer["value"]
