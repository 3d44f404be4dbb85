"""Fixtures for the reliability suite: gunicorn services per layout, dedicated Postgres clusters
that outage tests may stop, and a summary of what was checked printed at the end of the run."""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from authsvc import embedded
from tests.conftest import migrate
from tests.pgcluster import PgServer
from tests.reliability.support import REPORT, Layout, start_server
from tests.service import Gunicorn, service_env


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if REPORT:
        terminalreporter.write_sep("=", "reliability: what was checked")
        for line in REPORT:
            terminalreporter.write_line(line)
    failed = [
        (r.nodeid, dict(r.user_properties)["chaos_seed"])
        for r in terminalreporter.stats.get("failed", []) + terminalreporter.stats.get("error", [])
        if "chaos_seed" in dict(getattr(r, "user_properties", ()))
    ]
    if failed:
        terminalreporter.write_sep(
            "=", "reliability: seeds of the failed randomized runs", red=True
        )
        for nodeid, seed in dict.fromkeys(failed):
            terminalreporter.write_line(f"{nodeid}: seed {seed}; replay it with")
            terminalreporter.write_line(f"  AUTHSVC_CHAOS_SEED={seed} python -m pytest '{nodeid}'")


@pytest.fixture
def chaos_seed(request: pytest.FixtureRequest) -> int:
    """The randomized schedule's seed: $AUTHSVC_CHAOS_SEED, or a fresh one. Kept on the test's
    report, so that the end of the run prints it (and how to replay it) when the test fails."""
    seed = int(os.environ.get("AUTHSVC_CHAOS_SEED") or random.SystemRandom().randrange(2**32))
    request.node.user_properties.append(("chaos_seed", seed))
    return seed


@pytest.fixture(scope="session")
def state_dir() -> Iterator[Path]:
    """Data directories and gunicorn logs of this session."""
    path = Path(tempfile.mkdtemp(prefix="authsvc-reliability-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Services:
    """gunicorn instances (2 workers), started on first use, started again if they died, and
    stopped at the end of the session. Each keeps its data and its log under the session's
    state_dir."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.running: dict[str, Gunicorn] = {}

    def get(
        self, layout: Layout, name: str = "", extra_env: dict[str, str] | None = None
    ) -> Gunicorn:
        key = f"{layout.name}{'-' + name if name else ''}"
        service = self.running.get(key)
        if service is None:
            (self.root / key).mkdir(parents=True, exist_ok=True)
            env = service_env(self.root / key, **{**layout.env(), **(extra_env or {})})
            service = Gunicorn.started(env, log_path=self.root / f"gunicorn-{key}.log", name=key)
            self.running[key] = service
        elif not service.running:
            service.restart()
        return service

    def stop_all(self) -> None:
        for service in self.running.values():
            service.stop()
        self.running.clear()


@pytest.fixture(scope="session")
def services(state_dir: Path) -> Iterator[Services]:
    pool = Services(state_dir)
    yield pool
    pool.stop_all()


@pytest.fixture(params=["one", "split"])
def layout(
    request: pytest.FixtureRequest,
    owner_url: str,
    database_url: str,
    split_owner_urls: tuple[str, str],
    split_urls: tuple[str, str],
) -> Layout:
    """Both layouts on the session's shared cluster; tests/conftest.py empties the tables
    before each test (this fixture asks for database_url and split_urls)."""
    if request.param == "one":
        return Layout("one", owner_url, owner_url, database_url, database_url)
    return Layout("split", *split_owner_urls, *split_urls)


@pytest.fixture
def service(layout: Layout, services: Services) -> Gunicorn:
    return services.get(layout)


# -- clusters that may be stopped ------------------------------------------------------------


def _throwaway_cluster() -> PgServer:
    """Always our own cluster (even with TEST_DATABASE_URL set): these tests stop it."""
    try:
        embedded.find_bin_dir()
    except embedded.EmbeddedError as exc:
        pytest.skip(f"outage tests need Postgres server binaries: {exc}")
    return PgServer.throwaway()


@pytest.fixture(scope="session")
def outage_clusters() -> Iterator[tuple[PgServer, PgServer]]:
    """Two dedicated clusters: A holds the one-database layout and the split layout's profiles,
    B the split layout's identities, so either side of a split deployment can go down alone."""
    a = _throwaway_cluster()
    b = _throwaway_cluster()
    yield a, b
    for server in (a, b):
        try:
            start_server(server)
        finally:
            server.stop()


@pytest.fixture(scope="session")
def outage_layouts(outage_clusters: tuple[PgServer, PgServer]) -> dict[str, Layout]:
    a, b = outage_clusters
    one = a.create_database("authsvc_outage")
    migrate(one)
    app_url = a.create_database("authsvc_outage_app")
    auth_url = b.create_database("authsvc_outage_auth")
    migrate(app_url, auth_url)
    one_service = a.service_url(one)
    return {
        "one": Layout(
            "outage-one", one, one, one_service, one_service, app_server=a, auth_server=a
        ),
        "split": Layout(
            "outage-split",
            app_url,
            auth_url,
            a.service_url(app_url),
            b.service_url(auth_url),
            app_server=a,
            auth_server=b,
        ),
    }
