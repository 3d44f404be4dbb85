"""Behind a transaction-mode pooler (PgBouncer, Supavisor): `authsvc doctor`'s checks of how
connections behave across transactions, the server-side statement timeout the service then
relies on, and the direct URLs that migrations and repairs need."""

from __future__ import annotations

from typing import Any

import psycopg

from authsvc.config import Settings
from authsvc.errors import DatabaseUnavailable
from authsvc.stores.pg.database import Database

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
        found.update(
            backends=(row["pid"], again["pid"]), role=row["role"], timeout_ms=again["timeout_ms"]
        )
    except DatabaseUnavailable as exc:
        found["error"] = str(exc.__cause__ or exc.message).strip()
    except psycopg.Error as exc:
        found["error"] = str(exc).strip()
    finally:
        for conn in conns:
            conn.close()
    return found


def pooler_checks(settings: Settings) -> list[tuple[str, bool, str]]:
    """The pooler setting, checked the way a transaction-mode pooler breaks connections (two
    transactions in a row, each on whatever server connection it gives), the server-side
    statement timeout behind one, and the direct URLs that migrations need."""
    mode = settings.db_pooler
    options = {
        "connect_timeout": settings.connect_timeout,
        "statement_timeout_ms": settings.statement_timeout_ms,
    }
    targets = [("database", "DATABASE_URL", settings.database_url, settings.database_direct_url)]
    if settings.split:
        targets.append(
            (
                "auth_database",
                "AUTH_DATABASE_URL",
                settings.auth_database_url,
                settings.auth_database_direct_url,
            )
        )
    checks: list[tuple[str, bool, str]] = []
    for name, variable, url, direct_url in targets:
        suffix = f" ({name})" if settings.split else ""
        probe = probe_transactions(Database(url or "", name, pooler=mode, **options))
        verdict = _pooler_verdict(probe, mode, variable)
        if verdict is not None:  # None: unreachable, which the database check reports
            checks.append((f"pooler{suffix}", *verdict))
        if mode == "transaction" and probe["error"] is None and settings.statement_timeout_ms:
            checks.append((f"statement timeout{suffix}", *_timeout_verdict(probe, settings)))
        direct_variable = variable.replace("_URL", "_DIRECT_URL")
        if direct_url:
            direct = probe_transactions(Database(direct_url, name, **options))
            checks.append((f"direct url{suffix}", *_direct_verdict(direct, direct_variable)))
        elif mode == "transaction":
            checks.append(
                (
                    f"direct url{suffix}",
                    False,
                    f"{direct_variable} is not set: `authsvc migrate` and `authsvc reconcile "
                    f"--repair` refuse to run through the pooler -> set {direct_variable} to the "
                    "direct (unpooled) connection string",
                )
            )
    return checks


def _pooler_verdict(probe: dict[str, Any], mode: str, variable: str) -> tuple[bool, str] | None:
    error, pids = probe["error"], probe["backends"]
    fix = "-> set AUTHSVC_DB_POOLER=transaction (and DATABASE_DIRECT_URL for migrations)"
    if error and "startup parameter" in error:
        return False, f"{variable} goes through a pooler that refused to connect ({error}) {fix}"
    if error and "prepared statement" in error:
        return False, (
            f"a statement prepared in one transaction was gone in the next ({error}): "
            f"{variable} goes through a transaction-mode pooler {fix}"
        )
    if error:
        return None
    moved = pids[0] != pids[1]
    if mode == "transaction":
        where = (
            f"ran on server connections {pids[0]} and {pids[1]}"
            if moved
            else f"kept server connection {pids[0]} (no pooler seen; the setting is harmless)"
        )
        return True, (
            f"AUTHSVC_DB_POOLER=transaction: two transactions {where}, without prepared "
            "statements or session state"
        )
    if moved:
        return False, (
            f"two transactions on one connection ran on server connections {pids[0]} and "
            f"{pids[1]}: {variable} goes through a transaction-mode pooler {fix}"
        )
    return True, f"AUTHSVC_DB_POOLER=none: two transactions kept server connection {pids[0]}"


def _timeout_verdict(probe: dict[str, Any], settings: Settings) -> tuple[bool, str]:
    role, actual, wanted = probe["role"], probe["timeout_ms"], settings.statement_timeout_ms
    if not actual:
        return False, (
            f"the server sets no statement_timeout for role {role}, and through a "
            f"transaction-mode pooler it cannot be sent at connect time -> run ALTER ROLE "
            f"{role} SET statement_timeout = '{wanted}ms' (AUTHSVC_DB_STATEMENT_TIMEOUT_MS) on "
            "the direct connection, then reconnect the pooler's server connections"
        )
    note = "" if actual == wanted else f" (AUTHSVC_DB_STATEMENT_TIMEOUT_MS is {wanted})"
    return True, f"the server's statement_timeout for role {role} is {actual} ms{note}"


def _direct_verdict(probe: dict[str, Any], variable: str) -> tuple[bool, str]:
    fix = "-> point it at the database itself (Supabase: the direct connection, port 5432)"
    pids = probe["backends"]
    if probe["error"]:
        return False, f"{variable} failed: {probe['error']} {fix}"
    if pids[0] != pids[1]:
        return False, (
            f"{variable} ran two transactions on server connections {pids[0]} and {pids[1]}: "
            f"it goes through a pooler too {fix}"
        )
    return True, (
        f"{variable} keeps its session (server connection {pids[0]} across two transactions): "
        "migrations and repairs use it"
    )
