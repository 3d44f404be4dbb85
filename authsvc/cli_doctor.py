"""authsvc doctor: one line per check (configuration, pooler, database, migrations, roles,
layout, triggers, drift), with what to do about a failing one; exit status 1 when any fails."""

from __future__ import annotations

import argparse

from authsvc.config import Settings, secret_weakness
from authsvc.errors import AuthError
from authsvc.stores import Stores

Check = tuple[str, bool, str]


def cmd_doctor(args: argparse.Namespace, settings: Settings) -> int:
    from authsvc.cli import _database, _explain, _stores  # cli imports this module

    weakness = secret_weakness(settings.jwt_secret_key)
    checks: list[Check] = [
        (
            "configuration",
            True,
            f"env={settings.env} backend={settings.backend} "
            f"{'split databases' if settings.split else 'one database'}"
            + (
                f"; JWT_SECRET_KEY is weak ({weakness}): set a strong one before production"
                if weakness and not settings.jwt_secret_generated
                else ""
            ),
        )
    ]
    try:
        with _database(settings) as settings, _stores(settings) as stores:
            checks.extend(stores.admin.connection_checks())
            checks.extend(_store_checks(stores, settings))
    except Exception as exc:  # noqa: BLE001 - reported as a failed check
        message = _explain(exc, settings) if isinstance(exc, AuthError) else str(exc)
        checks.append(("database", False, message))
    return _print_checks(checks)


def _store_checks(stores: Stores, settings: Settings) -> list[Check]:
    from authsvc.services import reconcile

    states = stores.admin.check()
    ok = all(v == "ok" for v in states.values())
    shown = (
        states.get("database", "")
        if list(states) == ["database"]
        else ", ".join(f"{name}: {state}" for name, state in states.items())
    )
    checks: list[Check] = [
        (
            "database",
            ok,
            shown
            + (
                "" if ok else " -> check DATABASE_URL / AUTH_DATABASE_URL and that the server is up"
            ),
        )
    ]
    if not ok:
        from authsvc.cli import why_unreachable

        said = [why_unreachable(settings, name) for name, state in states.items() if state != "ok"]
        checks.extend(("connection", False, s) for s in said if s)
    if not ok:
        return checks
    try:
        status = stores.admin.migration_status()
    except AuthError as exc:
        return [*checks, ("migrations", False, f"{exc.message} -> run `authsvc migrate`")]
    pending = status["pending"]
    checks.append(
        (
            "migrations",
            not pending,
            f"schema version {status['schema_version']}"
            if not pending
            else f"pending: {', '.join(pending)} -> run `authsvc migrate`",
        )
    )
    if pending:
        return checks  # the remaining checks read tables the migrations create
    checks.extend(stores.admin.diagnose())
    try:
        drift = reconcile.find_drift(stores, settings.reconcile_grace_seconds)
        counts = ", ".join(f"{k.replace('_', ' ')}: {n}" for k, n in drift.counts.items())
        checks.append(
            (
                "drift",
                drift.total == 0,
                counts + ("" if drift.total == 0 else " -> run `authsvc reconcile --repair`"),
            )
        )
    except AuthError as exc:
        checks.append(("drift", False, exc.message))
    return checks


def _print_checks(checks: list[Check]) -> int:
    for name, ok, detail in checks:
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")
    return 0 if all(ok for _, ok, _ in checks) else 1
