"""Fixtures for the Supabase backend: a fake project at the HTTP layer, sessions in real Postgres.

Sessions live in a database of their own on the test server, migrated by SupabaseStore.migrate()
(the "sessions" set only), as in a deployment whose DATABASE_URL is not Supabase's database.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from authsvc import create_app
from tests.conftest import app_overrides, migrate_with, truncate
from tests.pgcluster import PgServer
from tests.supabase.fake import ANON_KEY, SERVICE_KEY, SUPABASE_URL, FakeSupabase


def supabase_env(
    database_url: str,
    data_dir: Any,
    service_key: str = SERVICE_KEY,
    anon_key: str = ANON_KEY,
    **extra: Any,
) -> dict[str, Any]:
    """The environment of a Supabase-mode deployment, by variable name."""
    return app_overrides(
        database_url,
        data_dir,
        AUTHSVC_BACKEND="supabase",
        SUPABASE_URL=SUPABASE_URL,
        SUPABASE_SERVICE_ROLE_KEY=service_key,
        SUPABASE_ANON_KEY=anon_key,
        **extra,
    )


def migrate_sessions(database_url: str, data_dir: Any) -> None:
    migrate_with(supabase_env(database_url, data_dir))


@pytest.fixture(scope="session")
def sessions_owner_url(pg: PgServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The sessions database, as its owner (migrations, assertions)."""
    url = pg.create_database("authsvc_test_supabase")
    migrate_sessions(url, tmp_path_factory.mktemp("supabase-migrate"))
    return url


@pytest.fixture(scope="session")
def sessions_url(pg: PgServer, sessions_owner_url: str) -> str:
    """The sessions database as the service connects to it (the non-superuser service role)."""
    return pg.service_url(sessions_owner_url)


@pytest.fixture(autouse=True)
def _clean_sessions(request: pytest.FixtureRequest) -> None:
    if "sessions_owner_url" in request.fixturenames:
        truncate(request.getfixturevalue("sessions_owner_url"))


@pytest.fixture
def fake() -> Iterator[FakeSupabase]:
    with FakeSupabase() as project:
        yield project


@pytest.fixture
def app(sessions_url: str, tmp_path: Any, fake: FakeSupabase):
    app = create_app(supabase_env(sessions_url, tmp_path))
    yield app
    app.extensions["authsvc"].stores.close()


@pytest.fixture
def sessions_db(sessions_owner_url: str) -> Iterator[psycopg.Connection]:
    """A raw connection to the sessions database, for assertions."""
    with psycopg.connect(sessions_owner_url, autocommit=True, row_factory=dict_row) as conn:
        yield conn


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, sessions_url: str, tmp_path: Any):
    """Point `authsvc ...` (which reads os.environ) at the fake project; returns a setter for
    extra variables."""

    def apply(**extra: Any) -> None:
        env = supabase_env(sessions_url, tmp_path, **extra)
        env.pop("TESTING")
        for name, value in env.items():
            monkeypatch.setenv(name, str(value))

    apply()
    return apply
