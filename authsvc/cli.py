"""authsvc serve | migrate | reconcile [--repair] [--json] | doctor"""

from __future__ import annotations

import argparse
import atexit
import json
import logging
import os
import sys
from typing import Any

from authsvc import observability
from authsvc.config import ConfigError, Settings, load_settings, redact_url, secret_weakness
from authsvc.errors import AuthError
from authsvc.passwords import Hasher

log = logging.getLogger("authsvc.cli")


def _store(settings: Settings) -> Any:
    from authsvc.stores import make_store

    return make_store(
        settings,
        Hasher(settings.argon2_time_cost, settings.argon2_memory_kib, settings.argon2_parallelism),
    )


def _settings_with_database(started: list[Any] | None = None) -> Settings:
    """Settings; with no database configured, the embedded one (started if need be)."""
    settings = load_settings()
    if settings.database_url:
        return settings
    from authsvc import embedded

    cluster = embedded.ensure_running(settings.data_dir)
    if started is not None and cluster.started_here:
        started.append(cluster)
    return settings.with_database(cluster.url)


def cmd_serve(args: argparse.Namespace) -> int:
    started: list[Any] = []
    settings = _settings_with_database(started)
    if started:
        atexit.register(_stop_embedded, settings)
    # Hand the resolved database to the app (and to the reloader's child process).
    os.environ["DATABASE_URL"] = settings.database_url or ""
    if settings.auth_database_url:
        os.environ["AUTH_DATABASE_URL"] = settings.auth_database_url
    store = _store(settings.direct("`authsvc serve`, which migrates first,"))
    try:
        applied = store.migrate()
    finally:
        store.close()
    if applied:
        log.info("migrations applied", extra={"migrations": applied})
    host = args.host or settings.host
    port = args.port if args.port is not None else settings.port
    print(
        f"authsvc serving on http://{host}:{port} "
        f"(database {redact_url(settings.database_url or '')})",
        file=sys.stderr,
    )
    if args.reload:
        from werkzeug.serving import run_simple

        from authsvc import create_app

        run_simple(host, port, create_app(), use_reloader=True, threaded=True)
        return 0
    from gunicorn.app.base import BaseApplication

    class Server(BaseApplication):
        def load_config(self) -> None:
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", int(os.environ.get("WEB_CONCURRENCY", "1")))
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("threads", 4)
            self.cfg.set("timeout", 30)
            self.cfg.set("accesslog", None)
            if "control_socket_disable" in self.cfg.settings:  # gunicorn >= 25.1
                self.cfg.set("control_socket_disable", True)

        def load(self):
            from authsvc import create_app

            return create_app()

    Server().run()
    return 0


def _stop_embedded(settings: Settings) -> None:
    from authsvc import embedded

    try:
        embedded.stop(settings.data_dir)
    except Exception as exc:  # noqa: BLE001 - best effort at exit
        print(f"could not stop the embedded database: {exc}", file=sys.stderr)


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = _settings_with_database().direct("`authsvc migrate`")
    store = _store(settings)
    try:
        applied = store.migrate()
        status = store.migration_status()
    finally:
        store.close()
    if applied:
        print(f"applied {len(applied)} migration(s): {', '.join(applied)}")
    else:
        print("nothing to apply: the schema is up to date")
    print(f"schema version: {status['schema_version']}")
    return 0


def cmd_reconcile(args: argparse.Namespace) -> int:
    from authsvc.services import reconcile

    try:
        settings = _settings_with_database()
        if args.repair:
            # Repairs run on the direct connection, as migrations do.
            settings = settings.direct("`authsvc reconcile --repair`")
        store = _store(settings)
        try:
            result, remaining = reconcile.run(store, settings.reconcile_grace_seconds, args.repair)
        finally:
            store.close()
    except Exception as exc:  # noqa: BLE001 - whatever stopped it, the answer is exit 2
        # Exit 1 means "drift remains": a crash must not be mistaken for that by a scheduler.
        if isinstance(exc, AuthError):
            message = exc.message
        elif isinstance(exc, ConfigError):
            message = str(exc)
        else:
            log.exception("reconcile failed")
            message = f"unexpected {type(exc).__name__} (traceback in the log)"
        if args.json:
            print(json.dumps({"error": message}))
        print(f"reconcile could not run: {message}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result))
    else:
        for kind in (
            "identities_without_profile",
            "profiles_without_identity",
            "unfinished_signups",
        ):
            print(f"{kind}: {result[kind]['count']}")
            for i in result[kind]["ids"][:20]:
                print(f"  {i}")
        if result["repaired"]:
            print("repaired: " + ", ".join(f"{k}={v}" for k, v in result["repaired"].items()))
        print(
            f"remaining drift: {result['remaining']} "
            f"(grace {result['grace_seconds']}s, {result['elapsed_ms']} ms)"
        )
        if remaining and not args.repair:
            print("run `authsvc reconcile --repair` to finish or remove these rows")
    return 1 if remaining else 0


def cmd_doctor(args: argparse.Namespace) -> int:
    checks: list[tuple[str, bool, str]] = []
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"FAIL configuration: {exc}")
        return 1
    weakness = secret_weakness(settings.jwt_secret_key)
    checks.append(
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
    )
    if not settings.database_url:
        try:
            settings = _settings_with_database()
        except Exception as exc:  # noqa: BLE001 - reported as a failed check
            checks.append(("database", False, f"embedded database: {exc}"))
            return _print_checks(checks)
    checks.extend(_pooler_checks(settings))
    store = _store(settings)
    try:
        states = store.check()
        ok = all(v == "ok" for v in states.values())
        checks.append(
            (
                "database",
                ok,
                ", ".join(f"{k}: {v}" for k, v in states.items())
                + (
                    ""
                    if ok
                    else " -> check DATABASE_URL / AUTH_DATABASE_URL and that the server is up"
                ),
            )
        )
        if ok:
            checks.extend(_store_checks(store, settings))
    finally:
        store.close()
    return _print_checks(checks)


def _pooler_checks(settings: Settings) -> list[tuple[str, bool, str]]:
    """The pooler setting, checked the way a transaction-mode pooler breaks connections (two
    transactions in a row, each on whatever server connection it gives), the server-side
    statement timeout behind one, and the direct URLs that migrations need."""
    from authsvc.stores.pg import Database, probe_transactions

    mode = settings.db_pooler
    options = {
        "connect_timeout": settings.connect_timeout,
        "statement_timeout_ms": settings.statement_timeout_ms,
    }
    targets = [("database", "DATABASE_URL", settings.database_url, settings.database_direct_url)]
    if settings.split:
        targets.append(
            ("auth_database", "AUTH_DATABASE_URL", settings.auth_database_url,
             settings.auth_database_direct_url)
        )
    checks: list[tuple[str, bool, str]] = []
    for name, variable, url, direct_url in targets:
        suffix = f" ({name})" if settings.split else ""
        probe = probe_transactions(Database(url or "", name, pooler=mode, **options))
        verdict = _pooler_verdict(probe, mode, variable)
        if verdict is not None:  # None: unreachable, which the database check reports
            checks.append((f"pooler{suffix}", *verdict))
        if mode == "transaction" and probe["error"] is None and settings.statement_timeout_ms:
            checks.append(
                (f"statement timeout{suffix}", *_timeout_verdict(probe, settings))
            )
        direct_variable = variable.replace("_URL", "_DIRECT_URL")
        if direct_url:
            direct = probe_transactions(Database(direct_url, name, **options))
            checks.append((f"direct url{suffix}", *_direct_verdict(direct, direct_variable)))
        elif mode == "transaction":
            checks.append((
                f"direct url{suffix}",
                False,
                f"{direct_variable} is not set: `authsvc migrate` and `authsvc reconcile "
                f"--repair` refuse to run through the pooler -> set {direct_variable} to the "
                "direct (unpooled) connection string",
            ))
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


def _store_checks(store: Any, settings: Settings) -> list[tuple[str, bool, str]]:
    from authsvc.services import reconcile

    checks: list[tuple[str, bool, str]] = []
    try:
        status = store.migration_status()
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
    except AuthError as exc:
        checks.append(("migrations", False, f"{exc.message} -> run `authsvc migrate`"))
        return checks
    for name, ok, detail in store.diagnose():
        checks.append((name, ok, detail))
    try:
        drift = reconcile.find_drift(store, settings.reconcile_grace_seconds)
        checks.append(
            (
                "drift",
                drift.total == 0,
                f"identities without profile: {drift.identities_without_profile_count}, "
                f"profiles without identity: {drift.profiles_without_identity_count}, "
                f"unfinished signups: {drift.unfinished_with_profile_count}"
                + ("" if drift.total == 0 else " -> run `authsvc reconcile --repair`"),
            )
        )
    except AuthError as exc:
        checks.append(("drift", False, exc.message))
    return checks


def _print_checks(checks: list[tuple[str, bool, str]]) -> int:
    for name, ok, detail in checks:
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")
    return 0 if all(ok for _, ok, _ in checks) else 1


def main(argv: list[str] | None = None) -> int:
    observability.configure_logging()
    parser = argparse.ArgumentParser(prog="authsvc", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the service (embedded database by default)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--reload", action="store_true", help="restart on code changes")
    serve.set_defaults(func=cmd_serve)
    sub.add_parser("migrate", help="apply pending migrations (safe to rerun)").set_defaults(
        func=cmd_migrate
    )
    rec = sub.add_parser("reconcile", help="find (and repair) identity/profile drift")
    rec.add_argument("--repair", action="store_true")
    rec.add_argument("--json", action="store_true")
    rec.set_defaults(func=cmd_reconcile)
    sub.add_parser("doctor", help="check configuration, database, migrations, drift").set_defaults(
        func=cmd_doctor
    )
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"authsvc: configuration error: {exc}", file=sys.stderr)
        return 2
    except AuthError as exc:
        print(f"authsvc: {exc.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
