"""A real Postgres for the tests: $TEST_DATABASE_URL's server, or a throwaway embedded cluster.

Shared by tests/ and e2e/. Databases are created fresh per test session and migrated with the
same code `authsvc migrate` runs.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from authsvc import embedded


@dataclass
class PgServer:
    admin_url: str  # a URL for the `postgres` maintenance database
    data_dir: Path | None = None  # set when we started the cluster ourselves
    created: list[str] = field(default_factory=list)

    @classmethod
    def start(cls) -> PgServer:
        url = os.environ.get("TEST_DATABASE_URL")
        if url:
            return cls(admin_url=make_conninfo(url, dbname="postgres"))
        # A directory the cluster's system user can reach (pytest's tmp dirs are 0700).
        data_dir = Path(tempfile.mkdtemp(prefix="authsvc-test-pg-"))
        data_dir.chmod(0o755)
        cluster = embedded.ensure_running(data_dir)
        return cls(admin_url=make_conninfo(cluster.url, dbname="postgres"), data_dir=data_dir)

    def url(self, dbname: str) -> str:
        params = conninfo_to_dict(self.admin_url)
        params["dbname"] = dbname
        return "postgresql://{user}:{password}@{host}:{port}/{dbname}".format(
            user=params.get("user", ""),
            password=params.get("password", ""),
            host=params.get("host", "127.0.0.1"),
            port=params.get("port", 5432),
            dbname=dbname,
        )

    def create_database(self, prefix: str = "authsvc_test") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = conninfo_to_dict(url)["dbname"]
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if name in self.created:
            self.created.remove(name)

    def stop(self) -> None:
        for name in list(self.created):
            try:
                self.drop_database(self.url(name))
            except psycopg.Error:
                pass
        if self.data_dir is not None:
            embedded.stop(self.data_dir)
            shutil.rmtree(self.data_dir, ignore_errors=True)

    # A stopped and restarted server, for outage tests (only on our own cluster).
    def stop_server(self) -> None:
        assert self.data_dir is not None, "needs the throwaway cluster"
        embedded.stop(self.data_dir)

    def start_server(self) -> None:
        assert self.data_dir is not None, "needs the throwaway cluster"
        embedded.ensure_running(self.data_dir)
