"""authsvc serve | migrate | reconcile [--repair] [--json] | doctor | users ...

Configuration comes from the environment (see README, "Configuration"). With no DATABASE_URL,
every command uses the embedded Postgres under the data dir (AUTHSVC_DATA_DIR, else the nearest
project root's .authsvc, else a per-user directory), starting it if need be; a command stops
what it started, and says which data dir and database it uses.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from authsvc import observability
from authsvc.config import ConfigError, Settings, load_settings, redact_url
from authsvc.errors import AuthError, DatabaseUnavailable
from authsvc.stores import Stores, make_stores

log = logging.getLogger("authsvc.cli")


def _say(message: str) -> None:
    print(f"authsvc: {message}", file=sys.stderr)


def _fail(
    args: argparse.Namespace,
    message: str,
    prefix: str = "",
    details: dict[str, Any] | None = None,
    status: int = 2,
) -> int:
    """Say why the command failed (on stderr; with --json also as one JSON object on stdout,
    so a script reading it gets JSON whatever happened); `status`: 2, could not run."""
    if getattr(args, "json", False):
        print(json.dumps({"error": message, **({"details": details} if details else {})}))
    _say(prefix + message + (f" {json.dumps(details)}" if details else ""))
    return status


_URL_VARIABLES = {"database": "DATABASE_URL", "auth_database": "AUTH_DATABASE_URL"}


def why_unreachable(settings: Settings, name: str | None) -> str | None:
    """What one direct connection to the database the stores call `name` says when it fails:
    a role or database that does not exist, a refused password or TLS setting. Retrying fixes
    none of those, and a pool only ever says it has no connection. None when it connects (the
    trouble has passed) or nothing is configured (the embedded database)."""
    import psycopg

    url = settings.auth_database_url if name == "auth_database" else settings.database_url
    if not url:
        return None
    try:
        with psycopg.connect(url, connect_timeout=max(1, settings.connect_timeout)):
            return None
    except psycopg.Error as exc:
        # libpq says where it tried, then what the server answered: the answer is the news.
        said = " ".join(str(exc).split()).rsplit(" failed: ", 1)[-1] or type(exc).__name__
        return f"{_URL_VARIABLES.get(name or '', 'DATABASE_URL')} ({redact_url(url)}): {said}"


def _explain(exc: AuthError, settings: Settings | None) -> str:
    """The error's message; for a database that could not be reached, what it said."""
    if isinstance(exc, DatabaseUnavailable) and not exc.lost and settings is not None:
        said = why_unreachable(settings, (exc.details or {}).get("database"))
        if said:
            return f"cannot connect to {said}"
    return exc.message


def _where(settings: Settings, origin: str) -> str:
    url = redact_url(settings.database_url or "")
    if settings.split:
        url = f"{url} (identities: {redact_url(settings.auth_database_url or '')})"
    return f"database {url} ({origin})"


@contextmanager
def _database(settings: Settings, direct_for: str | None = None) -> Iterator[Settings]:
    """The settings with a database: the configured one (on its direct URLs when `direct_for`,
    a command that needs a session of its own, is given), or the embedded one, started if need
    be and stopped again afterwards when this command started it."""
    if settings.database_url:
        origin = "DATABASE_URL"
        if direct_for:
            settings = settings.direct(direct_for)
            direct = [("DATABASE_DIRECT_URL", settings.database_direct_url)]
            if settings.split:
                direct.append(("AUTH_DATABASE_DIRECT_URL", settings.auth_database_direct_url))
            origin = ", ".join(name for name, url in direct if url) or origin
        _say(_where(settings, origin))
        yield settings
        return
    from authsvc import embedded

    settings, cluster = embedded.with_database(settings)
    _say(
        _where(settings, f"embedded, data dir {settings.data_dir}")
        + ("; started it" if cluster.started_here else "; already running")
    )
    # gunicorn's workers are forks of this process and leave through this frame too: only the
    # process that started the database stops it.
    starter = os.getpid() if cluster.started_here else None
    try:
        yield settings
    finally:
        if starter == os.getpid():
            _stop_embedded(settings)


def _stop_embedded(settings: Settings) -> None:
    from authsvc import embedded

    try:
        embedded.stop(settings.data_dir)
        _say(f"stopped the embedded database it started (data dir {settings.data_dir})")
    except Exception as exc:  # noqa: BLE001 - best effort at exit
        _say(f"could not stop the embedded database: {exc}")


@contextmanager
def _stores(settings: Settings) -> Iterator[Stores]:
    stores = make_stores(settings)
    try:
        yield stores
    finally:
        stores.close()


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    # The embedded database this command starts is stopped when the server exits; one that
    # was already running is left running.
    with _database(settings) as settings:
        with _stores(settings.direct("`authsvc serve`, which migrates first,")) as stores:
            applied = stores.admin.migrate()
            notes = stores.admin.align_layout()
        if applied:
            log.info("migrations applied", extra={"migrations": applied})
        for note in notes:
            log.warning("layout: " + note)
        return _serve(args, settings)


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    host = args.host or settings.host
    port = args.port if args.port is not None else settings.port
    _say(f"serving on http://{host}:{port}")
    from authsvc import create_app

    if args.reload:
        from werkzeug.serving import run_simple

        # The reloader runs this command again in a child process, which finds the same
        # database (the embedded one already running) by itself.
        run_simple(host, port, create_app(settings), use_reloader=True, threaded=True)
        return 0
    from gunicorn.app.base import BaseApplication

    from authsvc import serving

    class Server(BaseApplication):
        def load_config(self) -> None:
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", args.workers)
            self.cfg.set("worker_class", serving.WORKER_CLASS)
            self.cfg.set("threads", 4)
            self.cfg.set("timeout", 30)
            self.cfg.set("accesslog", None)
            self.cfg.set("logconfig_dict", observability.GUNICORN_LOGCONFIG)
            self.cfg.set("logger_class", observability.GunicornLogger)
            for hook in serving.HOOKS:
                self.cfg.set(hook, getattr(serving, hook))
            if "control_socket_disable" in self.cfg.settings:  # gunicorn >= 25.1
                self.cfg.set("control_socket_disable", True)

        def load(self) -> Callable[..., Any]:
            return create_app(settings)

    Server().run()
    return 0


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    with (
        _database(settings, direct_for="`authsvc migrate`") as settings,
        _stores(settings) as stores,
    ):
        applied = stores.admin.migrate()
        notes = stores.admin.align_layout()
        status = stores.admin.migration_status()
    if applied:
        print(f"applied {len(applied)} migration(s): {', '.join(applied)}")
    else:
        print("nothing to apply: the schema is up to date")
    for note in notes:
        print(f"layout: {note}")
    print(f"schema version: {status['schema_version']}")
    return 0


def cmd_reconcile(args: argparse.Namespace, settings: Settings) -> int:
    from authsvc.services import reconcile

    try:
        # Repairs run on the direct connection, as migrations do.
        direct_for = "`authsvc reconcile --repair`" if args.repair else None
        with _database(settings, direct_for) as settings, _stores(settings) as stores:
            result, remaining = reconcile.run(stores, settings.reconcile_grace_seconds, args.repair)
    except Exception as exc:  # noqa: BLE001 - whatever stopped it, the answer is exit 2
        # Exit 1 means "drift remains": a crash must not be mistaken for that by a scheduler.
        if isinstance(exc, AuthError):
            message = _explain(exc, settings)
        elif isinstance(exc, ConfigError):
            message = str(exc)
        else:
            log.exception("reconcile failed")
            message = f"unexpected {type(exc).__name__} (traceback in the log)"
        return _fail(args, message, "reconcile could not run: ")
    if args.json:
        print(json.dumps(result))
        return 1 if remaining else 0
    for kind in reconcile.KINDS:
        print(f"{kind}: {result[kind]['count']}")
        for i in result[kind]["ids"][:20]:
            print(f"  {i}")
    if result["repaired"]:
        print("repaired: " + ", ".join(f"{k}={v}" for k, v in result["repaired"].items()))
    for why in result.get("held_back", {}).get("profiles_without_identity", []):
        print(f"profiles without an identity left alone: {why}")
    print(
        f"remaining drift: {result['remaining']} "
        f"(grace {result['grace_seconds']}s, {result['elapsed_ms']} ms)"
    )
    if remaining and not args.repair:
        print("run `authsvc reconcile --repair` to finish or remove these rows")
    return 1 if remaining else 0


def cmd_purge(args: argparse.Namespace, settings: Settings) -> int:
    from authsvc.services import maintenance

    with _database(settings) as settings, _stores(settings) as stores:
        counts = maintenance.purge(stores, settings)
    if args.json:
        print(json.dumps(counts))
    else:
        print("purged: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="authsvc",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = sub.add_parser(
        "serve",
        help="run the service (development; the embedded database by default)",
        description="Run the service with gunicorn (AUTHSVC_ENV defaults to development "
        "here). Migrates its database first. With no DATABASE_URL, starts the embedded "
        "Postgres and stops it again on exit if it started it.",
    )
    serve.add_argument("--host", help="address to listen on (default: $HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default: $PORT or 8000)")
    serve.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("WEB_CONCURRENCY", "1")),
        help="gunicorn worker processes (default: $WEB_CONCURRENCY or 1)",
    )
    serve.add_argument(
        "--reload",
        action="store_true",
        help="restart on code changes (werkzeug's reloader instead of gunicorn)",
    )
    serve.set_defaults(func=cmd_serve)
    sub.add_parser(
        "migrate",
        help="apply pending migrations (safe to rerun, and by two instances at once)",
        description="Apply pending migrations to every database the configuration names, "
        "serialised across instances by an advisory lock; then fit the profile database to "
        "the layout (one database or split) and say what changed.",
    ).set_defaults(func=cmd_migrate)
    rec = sub.add_parser(
        "reconcile",
        help="find (and repair) drift between identities and profiles",
        description="Find identities without a profile, profiles without an identity and "
        "unfinished signups older than AUTHSVC_RECONCILE_GRACE_SECONDS. Exit status: 0 no "
        "drift (or all repaired), 1 drift remains, 2 reconcile could not run.",
    )
    rec.add_argument(
        "--repair",
        action="store_true",
        help="remove unfinished signups and orphan profiles, give complete identities their "
        "profile back",
    )
    rec.add_argument(
        "--json", action="store_true", help="print one JSON object (counts, up to 1,000 ids)"
    )
    rec.set_defaults(func=cmd_reconcile)
    purge = sub.add_parser(
        "purge",
        help="remove spent refresh tokens, ended sessions, expired keys and links, idle "
        "anonymous accounts and old audit events",
        description="Remove what can never be used again: refresh tokens expired or spent "
        "longer ago than AUTHSVC_SPENT_TOKEN_RETENTION_SECONDS, sessions revoked that long ago "
        "or left without tokens, expired idempotency keys and one-time links; anonymous "
        "accounts idle past AUTHSVC_ANONYMOUS_MAX_IDLE_DAYS (both rows); audit events past "
        "AUTHSVC_AUDIT_RETENTION_DAYS. The service also does this by itself, at most every "
        "AUTHSVC_PURGE_INTERVAL_SECONDS, one instance at a time.",
    )
    purge.add_argument("--json", action="store_true", help="print the counts as one JSON object")
    purge.set_defaults(func=cmd_purge)
    from authsvc.cli_doctor import cmd_doctor

    sub.add_parser(
        "doctor",
        help="check configuration, database, migrations, roles, drift",
        description="One line per check, with what to do about a failing one; exit status 1 "
        "when any check fails.",
    ).set_defaults(func=cmd_doctor)
    # Account lifecycle (admin): `authsvc users ...`.
    from authsvc.cli_users import register as register_users

    register_users(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    observability.configure_logging()
    args = _parser().parse_args(argv)
    settings: Settings | None = None
    try:
        settings = load_settings(os.environ, default_env="development")
        return args.func(args, settings)
    except ConfigError as exc:
        if args.command == "doctor":
            print(f"FAIL configuration: {exc}")
            return 1
        return _fail(args, str(exc), "configuration error: ")
    except AuthError as exc:
        return _fail(args, _explain(exc, settings))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
