"""Fixtures: a real Postgres, apps built by create_app(), raw-SQL helpers, an auth client."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from authsvc import create_app
from authsvc.config import load_settings
from authsvc.stores import make_stores
from tests import pgbouncer
from tests.pgcluster import PgServer

TABLES = (
    "auth.users",
    "public.users",
    "authsvc.sessions",
    "authsvc.refresh_tokens",
    "authsvc.idempotency_keys",
    "authsvc.maintenance",
    "authsvc.rate_limits",
    "authsvc.one_time_tokens",
)
# Emptied before each test like TABLES, but not account data: the audit log records failures too.
LOG_TABLES = ("authsvc.audit_events",)
TEST_SECRET = "test-signing-key-9f8e7d6c5b4a39281706f5e4d3c2b1a0-long-enough"
PASSWORD = "correct horse battery staple"

# Cheap hashing for tests (one test checks the production parameters meet OWASP's minimum).
CHEAP_ARGON2 = {
    "AUTHSVC_ARGON2_TIME_COST": "1",
    "AUTHSVC_ARGON2_MEMORY_KIB": "8",
    "AUTHSVC_ARGON2_PARALLELISM": "1",
}


def app_overrides(database_url: str, tmp_path: Any, **extra: Any) -> dict[str, Any]:
    """An in-process app's settings on `database_url` (behind PgBouncer under
    AUTHSVC_TEST_POOLER=pgbouncer), `extra` last."""
    return pgbouncer.route(
        {
            "TESTING": True,
            "DATABASE_URL": database_url,
            "AUTH_DATABASE_URL": "",
            "POSTGRES_URL": "",
            "AUTHSVC_ENV": "development",
            "AUTHSVC_BACKEND": "postgres",
            "JWT_SECRET_KEY": TEST_SECRET,
            "AUTHSVC_DATA_DIR": str(tmp_path),
            "AUTHSVC_RATE_LIMITS": "off",
            # The hourly purge runs in a thread; tests that need it run it themselves.
            "AUTHSVC_PURGE_INTERVAL_SECONDS": "0",
            "AUTHSVC_DB_POOL_TIMEOUT": "3",
            "AUTHSVC_DB_CONNECT_TIMEOUT": "2",
            **CHEAP_ARGON2,
            **extra,
        }
    )


def migration_count(*sets: str) -> int:
    from authsvc.stores.pg.schema import migrations_dir

    return sum(len(list(Path(migrations_dir(name)).glob("*.sql"))) for name in sets)


def latest_migration(*sets: str) -> str:
    """The schema version a database holding these migration sets reports: the highest number
    among their files (so a new migration needs no test edited)."""
    from authsvc.stores.pg.schema import migrations_dir

    names = [p.name for name in sets for p in Path(migrations_dir(name)).glob("*.sql")]
    return max(name.split("_", 1)[0] for name in names)


def migrate(database_url: str, auth_database_url: str | None = None) -> None:
    """Run the real migrations, through the code `authsvc migrate` uses."""
    migrate_with(
        {
            "DATABASE_URL": database_url,
            "AUTH_DATABASE_URL": auth_database_url or database_url,
            "JWT_SECRET_KEY": TEST_SECRET,
            "AUTHSVC_ENV": "development",
        }
    )


def migrate_with(env: dict[str, Any]) -> None:
    """The migrations of the store these settings name (`authsvc migrate`'s code, on the direct
    URLs as it runs them when the suite puts the service behind PgBouncer)."""
    stores = make_stores(load_settings(pgbouncer.route(env)).direct("`authsvc migrate`"))
    try:
        stores.admin.migrate()
    finally:
        stores.close()


@pytest.fixture(scope="session")
def pg() -> Iterator[PgServer]:
    server = PgServer.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def owner_url(pg: PgServer) -> str:
    """The session's migrated database, as the admin user who owns its tables: for faults
    (triggers, constraints, policies, revokes) and raw-SQL assertions, never for the service."""
    url = pg.create_database()
    migrate(url)
    return url


@pytest.fixture(scope="session")
def database_url(pg: PgServer, owner_url: str) -> str:
    """The same database as the service connects to it: the non-superuser service role."""
    return pg.service_url(owner_url)


@pytest.fixture(scope="session")
def split_owner_urls(pg: PgServer) -> tuple[str, str]:
    """(profile database, identity database) for the split deployment, as their owner."""
    app_url = pg.create_database("authsvc_test_app")
    auth_url = pg.create_database("authsvc_test_auth")
    migrate(app_url, auth_url)
    return app_url, auth_url


@pytest.fixture(scope="session")
def split_urls(pg: PgServer, split_owner_urls: tuple[str, str]) -> tuple[str, str]:
    """(profile database, identity database) as the service connects to them."""
    app_url, auth_url = split_owner_urls
    return pg.service_url(app_url), pg.service_url(auth_url)


@pytest.fixture
def service_role(pg: PgServer, database_url: str) -> str:
    """The service's role, for tests whose faults only bite a role that neither is a superuser,
    nor bypasses row-level security, nor owns the tables (skipped when there is none)."""
    if pg.service_role is None:
        pytest.skip(pg.service_role_missing)
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT current_user, r.rolsuper, r.rolbypassrls, "
            "pg_get_userbyid(c.relowner) = current_user AS owns "
            "FROM pg_roles r, pg_class c "
            "WHERE r.rolname = current_user AND c.oid = 'public.users'::regclass"
        ).fetchone()
    assert row == (pg.service_role, False, False, False), row
    return pg.service_role


def truncate(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        present = [
            t
            for t in (*TABLES, *LOG_TABLES)
            if conn.execute("SELECT to_regclass(%s) IS NOT NULL", (t,)).fetchone()[0]
        ]
        if present:
            conn.execute(f"TRUNCATE {', '.join(present)} CASCADE")


@pytest.fixture(autouse=True)
def _clean(request: pytest.FixtureRequest) -> None:
    """Every test that touches a database starts from empty tables (no rollback wrapper)."""
    names = request.fixturenames
    if "database_url" in names or "owner_url" in names:
        truncate(request.getfixturevalue("owner_url"))
    if "split_urls" in names or "split_owner_urls" in names:
        for url in request.getfixturevalue("split_owner_urls"):
            truncate(url)


@pytest.fixture
def app(database_url: str, tmp_path: Any):
    app = create_app(app_overrides(database_url, tmp_path))
    yield app
    app.extensions["authsvc"].stores.close()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def stores(app):
    return app.extensions["authsvc"].stores


@pytest.fixture
def db(owner_url: str) -> Iterator[psycopg.Connection]:
    """A raw connection for assertions, as the tables' owner: never the code under test."""
    with psycopg.connect(owner_url, autocommit=True, row_factory=dict_row) as conn:
        yield conn


# -- raw-SQL assertions ---------------------------------------------------------------------


def identity_row(db: psycopg.Connection, email: str) -> dict[str, Any] | None:
    return db.execute(
        "SELECT * FROM auth.users WHERE lower(email) = lower(%s)", (email,)
    ).fetchone()


def profile_row(db: psycopg.Connection, user_id: Any) -> dict[str, Any] | None:
    return db.execute("SELECT * FROM public.users WHERE id = %s", (str(user_id),)).fetchone()


def count(db: psycopg.Connection, table: str) -> int:
    return db.execute(f"SELECT count(*) AS n FROM {table}").fetchone()["n"]


def assert_no_trace(db: psycopg.Connection, email: str) -> None:
    """Neither table holds anything of `email`."""
    assert identity_row(db, email) is None, f"auth.users still holds {email}"
    row = db.execute(
        "SELECT id FROM public.users WHERE lower(email) = lower(%s)", (email,)
    ).fetchone()
    assert row is None, f"public.users still holds {email}"


# -- an API client that speaks the envelope -------------------------------------------------


class AuthActions:
    def __init__(self, client: Any) -> None:
        self.client = client

    def signup(
        self,
        email: str = "alice@example.com",
        password: str = PASSWORD,
        expect: int | None = 201,
        headers: dict | None = None,
        **fields: Any,
    ):
        body = {"email": email, "password": password, **fields}
        response = self.client.post("/api/v1/auth/signup", json=body, headers=headers or {})
        if expect is not None:
            assert response.status_code == expect, response.get_json()
        return response.get_json()

    def login(
        self, email: str = "alice@example.com", password: str = PASSWORD, expect: int | None = 200
    ):
        response = self.client.post(
            "/api/v1/auth/login", json={"email": email, "password": password}
        )
        if expect is not None:
            assert response.status_code == expect, response.get_json()
        return response.get_json()

    def me(self, token: str):
        return self.client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})


@pytest.fixture
def auth(client) -> AuthActions:
    return AuthActions(client)


def pytest_report_header(config: Any) -> str:
    where = os.environ.get("TEST_DATABASE_URL") and "TEST_DATABASE_URL" or "throwaway cluster"
    if pgbouncer.enabled():
        where += ", the service behind PgBouncer in transaction mode (AUTHSVC_TEST_POOLER)"
    return f"authsvc tests: real Postgres from {where}"


# -- mail: a real SMTP server on loopback ---------------------------------------------------


@pytest.fixture
def mailbox():
    """aiosmtpd on a free loopback port, keeping every message it accepts (tests/mailbox.py)."""
    from tests.mailbox import Mailbox

    with Mailbox() as box:
        yield box


@pytest.fixture
def mail_app(database_url: str, tmp_path: Any, mailbox):
    """The app with SMTP_URL pointing at `mailbox` and quick mail retries."""
    app = create_app(
        app_overrides(database_url, tmp_path, SMTP_URL=mailbox.url, AUTHSVC_MAIL_RETRY_MS="20")
    )
    yield app
    app.extensions["authsvc"].stores.close()


# -- the migrations the package ships (what `authsvc migrate` applies to a fresh database) -------


def shipped_migrations(*sets: str) -> list[str]:
    """The migration ids of `sets` (default: all of them), as yoyo names them ("0003_profiles")."""
    from importlib import resources

    root = resources.files("authsvc").joinpath("stores", "pg", "migrations")
    return sorted(
        entry.name.removesuffix(".sql")
        for group in root.iterdir()
        if group.is_dir() and (not sets or group.name in sets)
        for entry in group.iterdir()
        if entry.name.endswith(".sql")
    )


# The schema version of a fully migrated database: the highest migration number.
SCHEMA_VERSION = max(m.split("_", 1)[0] for m in shipped_migrations())


# -- account lifecycle (admin): the service in one database and split (tests/admin_support.py) --


@pytest.fixture(params=("one_database", "split"))
def deployment(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Any]:
    """The app with AUTHSVC_ADMIN_KEY set, in one database and then split across two."""
    from tests.admin_support import Deployment

    if request.param == "one_database":
        url, owner = request.getfixturevalue("database_url"), request.getfixturevalue("owner_url")
        built = Deployment("one_database", (url, url), owner, owner, tmp_path)
    else:
        app_url, auth_url = request.getfixturevalue("split_urls")
        app_owner, auth_owner = request.getfixturevalue("split_owner_urls")
        built = Deployment("split", (app_url, auth_url), auth_owner, app_owner, tmp_path)
    for url in {built.identity_owner_url, built.profile_owner_url}:
        truncate(url)  # the databases were asked for here, after the autouse clean-up
    yield built
    built.close()
