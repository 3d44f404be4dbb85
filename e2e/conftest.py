"""The service under gunicorn on a fresh database, and Debian's Chromium to drive it.

One gunicorn (two workers, gunicorn.conf.py read from the repository root) serves every test of
the session on a free loopback port (tests/service.py; behind PgBouncer in transaction mode when
the suite runs with AUTHSVC_TEST_POOLER=pgbouncer); each test starts from empty tables.
Chromium is the machine's own (/usr/bin/chromium, or $AUTHSVC_E2E_CHROMIUM): Playwright's
browser download is not used. Everything a run produces goes under test-results/ (pytest
--output; git-ignored), never into the repository: the service's log test-results/gunicorn.log;
per test, the screenshots the journeys take of the pages they check, and for a failing test a
screenshot and a Playwright trace (open it with `playwright show-trace <file>`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import APIRequestContext, Locator, Page, Playwright, expect

from e2e.helpers import PostgresRows
from tests.conftest import migrate, truncate
from tests.pgcluster import PgServer
from tests.service import Gunicorn, ServiceFailed, service_env

CHROMIUM = os.environ.get("AUTHSVC_E2E_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def pytest_configure(config: pytest.Config) -> None:
    # Keep a screenshot and a trace of every failing test unless told otherwise.
    if getattr(config.option, "tracing", None) == "off":
        config.option.tracing = "retain-on-failure"
    if getattr(config.option, "screenshot", None) == "off":
        config.option.screenshot = "only-on-failure"


@pytest.fixture(scope="session")
def e2e_postgres() -> Iterator[PgServer]:
    pg = PgServer.start()
    yield pg
    pg.stop()


@dataclass
class Service:
    """The service the journeys drive: its gunicorn, and its database as the service connects to
    it and as the owner (for faults and assertions)."""

    gunicorn: Gunicorn
    database_url: str
    owner_url: str

    @property
    def base_url(self) -> str:
        return self.gunicorn.base

    @property
    def rows(self) -> PostgresRows:
        """The service's tables, for the helpers in e2e.helpers."""
        return PostgresRows(self.owner_url)


@pytest.fixture(scope="session")
def service(
    e2e_postgres: PgServer, tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[Service]:
    """gunicorn serving wsgi:app, the way the Procfile runs it, on a fresh database."""
    owner_url = e2e_postgres.create_database("authsvc_e2e")
    migrate(owner_url)
    database_url = e2e_postgres.service_url(owner_url)
    output = Path(pytestconfig.getoption("--output", "test-results")).absolute()
    env = service_env(tmp_path_factory.mktemp("authsvc-data"), DATABASE_URL=database_url)
    try:
        gunicorn = Gunicorn.started(env, log_path=output / "gunicorn.log")
    except ServiceFailed as exc:
        pytest.fail(str(exc))
    # The URL the service was given (PgBouncer's under AUTHSVC_TEST_POOLER=pgbouncer).
    yield Service(gunicorn, gunicorn.env["DATABASE_URL"], owner_url)
    gunicorn.stop()


@pytest.fixture(autouse=True)
def _empty_tables(service: Service) -> None:
    """Every journey starts from empty tables (the running service keeps its pools)."""
    truncate(service.owner_url)


# -- Playwright ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def base_url(service: Service) -> str:
    """pytest-playwright's base URL: pages and request contexts resolve "/signup" against it."""
    return service.base_url


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:
    """Debian's Chromium instead of Playwright's download (which does not work here)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"no Chromium at {CHROMIUM}: run `scripts/install.sh --test` "
            "(or apt-get install chromium), or set AUTHSVC_E2E_CHROMIUM"
        )
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args: dict) -> dict:
    return {
        **browser_context_args,
        "viewport": {"width": 1280, "height": 860},
        "locale": "en-GB",
        "timezone_id": "UTC",
    }


@pytest.fixture
def api(playwright: Playwright, service: Service) -> Iterator[APIRequestContext]:
    """Playwright's HTTP client against the running service (traced like the pages)."""
    context = playwright.request.new_context(base_url=service.base_url)
    yield context
    context.dispose()


@pytest.fixture
def shoot(output_path: str):
    """Save a full-page screenshot of what a test checked, to its own folder under
    test-results/ (pytest-playwright's output_path), as <name>.png. It states what the page
    shows: each of `shows`, a locator or a text, must be visible, or no picture is taken."""
    folder = Path(output_path)

    def take(page: Page, name: str, *shows: Locator | str) -> Path:
        if not shows:
            raise TypeError(f"screenshot {name!r}: name what the page must show")
        for shown in shows:
            expect(
                page.get_by_text(shown).first if isinstance(shown, str) else shown
            ).to_be_visible()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.png"
        page.screenshot(path=str(path), full_page=True, animations="disabled", caret="hide")
        return path

    return take
