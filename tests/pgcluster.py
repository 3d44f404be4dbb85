"""A real Postgres for the tests: $TEST_DATABASE_URL's server, or a throwaway embedded cluster.

Shared by tests/ and e2e/. Databases are created fresh per test session and migrated with the
same code `authsvc migrate` runs, by the server's admin user, who owns the tables. The service
under test connects as another role, as it does on Supabase or any managed Postgres: not a
superuser, no BYPASSRLS, not the tables' owner, with only the privileges in SERVICE_GRANTS. So
row-level security and revoked privileges bite the service as they would in production.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from authsvc import embedded

# Everything the service's role is granted, per object, in each database that holds the object
# (one database holds all of them; in a split deployment the profile database holds public.users
# and the identity database the rest; both hold the migrations' bookkeeping). Nothing else:
# CONNECT, USAGE on the schemas, DML on the service's tables, and reading which migrations ran
# (/readyz, /version). No sequences (ids are UUIDs made by the service), no TRUNCATE, no DDL.
SERVICE_SCHEMAS = ("auth", "authsvc", "public")
SERVICE_TABLES = (
    "auth.users",
    "public.users",
    "authsvc.sessions",
    "authsvc.refresh_tokens",
    "authsvc.idempotency_keys",
    "authsvc.maintenance",
    "authsvc.rate_limits",
    "authsvc.one_time_tokens",  # the account lifecycle's mailed links
)
SERVICE_READ_ONLY_TABLES = ("authsvc._yoyo_migration",)
# The audit log is append-only for the service: it adds and reads events, and removes old ones
# only through the owner's purge function.
SERVICE_APPEND_ONLY_TABLES = ("authsvc.audit_events",)
SERVICE_FUNCTIONS = ("authsvc.purge_audit_events(integer)",)
SERVICE_GRANTS = (
    "GRANT CONNECT ON DATABASE {database} TO {role}",
    *(f"GRANT USAGE ON SCHEMA {schema} TO {{role}}" for schema in SERVICE_SCHEMAS),
    *(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {{role}}" for table in SERVICE_TABLES),
    *(f"GRANT SELECT ON {table} TO {{role}}" for table in SERVICE_READ_ONLY_TABLES),
    *(f"GRANT SELECT, INSERT ON {table} TO {{role}}" for table in SERVICE_APPEND_ONLY_TABLES),
    *(f"GRANT EXECUTE ON FUNCTION {function} TO {{role}}" for function in SERVICE_FUNCTIONS),
)
SERVICE_ROLE_OPTIONS = (
    "LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION NOINHERIT"
)


# Every server of this test session (started here or given by TEST_DATABASE_URL), by address:
# tests/pgbouncer.py puts a PgBouncer only in front of these, as their admin user.
_SERVERS: dict[tuple[str, int], PgServer] = {}


def _address(url: str) -> tuple[str, int] | None:
    """(host, port) of the one server `url` names; None when it names several."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return None  # not a connection string at all (a test of a malformed DATABASE_URL)
    host, port = params.get("host") or "127.0.0.1", params.get("port") or "5432"
    if "," in host or "," in port:
        return None
    return host, int(port)


def server_of(url: str) -> PgServer | None:
    """The session's server that `url` points at; None for anything else (a closed port, a
    proxy, a pooler, a list of hosts)."""
    address = _address(url)
    return _SERVERS.get(address) if address is not None else None


def _target(grant: str) -> str:
    """The object a grant statement names ("auth.users", "SCHEMA auth", "DATABASE ...")."""
    return grant.split(" ON ", 1)[1].split(" TO ", 1)[0]


@dataclass
class PgServer:
    admin_url: str  # a URL for the `postgres` maintenance database
    data_dir: Path | None = None  # set when we started the cluster ourselves
    created: list[str] = field(default_factory=list)
    # The service's role on this server, created on first use; None with the reason when the
    # admin user may not create roles (then the service connects as the admin user).
    service_role: str | None = None
    service_role_missing: str = ""
    _service_password: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        address = _address(self.admin_url)
        if address is not None:
            _SERVERS[address] = self

    @classmethod
    def start(cls) -> PgServer:
        url = os.environ.get("TEST_DATABASE_URL")
        if url:
            return cls(admin_url=make_conninfo(url, dbname="postgres"))
        return cls.throwaway()

    @classmethod
    def throwaway(cls) -> PgServer:
        """A cluster of our own, started now (the tests may stop it), whatever the environment
        says."""
        # A directory the cluster's system user can reach (pytest's tmp dirs are 0700).
        data_dir = Path(tempfile.mkdtemp(prefix="authsvc-test-pg-"))
        data_dir.chmod(0o755)
        cluster = embedded.ensure_running(data_dir)
        return cls(admin_url=make_conninfo(cluster.url, dbname="postgres"), data_dir=data_dir)

    def url(self, dbname: str, user: str | None = None, password: str | None = None) -> str:
        params = conninfo_to_dict(self.admin_url)
        return "postgresql://{user}:{password}@{host}:{port}/{dbname}".format(
            user=quote(user or params.get("user", ""), safe=""),
            password=quote(password or params.get("password", ""), safe=""),
            host=params.get("host", "127.0.0.1"),
            port=params.get("port", 5432),
            dbname=dbname,
        )

    # -- the service's role ----------------------------------------------------------------

    def ensure_service_role(self) -> str | None:
        """Create this server's service role once (see the module's docstring); None, with
        `service_role_missing` saying why, when the admin user may not create roles."""
        if self.service_role or self.service_role_missing:
            return self.service_role
        name = f"authsvc_service_{uuid.uuid4().hex[:8]}"
        password = secrets.token_hex(16)
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            may = conn.execute(
                "SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user"
            ).fetchone()[0]
            if not may:
                self.service_role_missing = (
                    "the admin user of TEST_DATABASE_URL may not create roles (needs SUPERUSER "
                    "or CREATEROLE), so the service connects as that user, not as a "
                    "non-superuser role"
                )
                return None
            conn.execute(
                sql.SQL("CREATE ROLE {} " + SERVICE_ROLE_OPTIONS + " PASSWORD {}").format(
                    sql.Identifier(name), sql.Literal(password)
                )
            )
            # An admin user that is no superuser may pg_terminate_backend the service's
            # connections (a fault) only as a member of its role.
            conn.execute(sql.SQL("GRANT {} TO current_user").format(sql.Identifier(name)))
        self.service_role, self._service_password = name, password
        return name

    def grant_service(self, url: str) -> None:
        """SERVICE_GRANTS on the objects the (migrated) database at `url` holds."""
        role = self.ensure_service_role()
        if role is None:
            return
        with psycopg.connect(url, autocommit=True) as conn:
            database = conn.execute("SELECT current_database()").fetchone()[0]
            for grant in SERVICE_GRANTS:
                target = _target(grant)
                if target.startswith("SCHEMA "):
                    check = "SELECT to_regnamespace(%s) IS NOT NULL"
                    present = conn.execute(check, (target.split()[1],)).fetchone()[0]
                elif target.startswith("DATABASE "):
                    present = True
                elif target.startswith("FUNCTION "):
                    check = "SELECT to_regprocedure(%s) IS NOT NULL"
                    present = conn.execute(check, (target.split()[1],)).fetchone()[0]
                else:
                    check = "SELECT to_regclass(%s) IS NOT NULL"
                    present = conn.execute(check, (target,)).fetchone()[0]
                if present:
                    conn.execute(
                        sql.SQL(grant).format(
                            database=sql.Identifier(database), role=sql.Identifier(role)
                        )
                    )

    def service_url(self, url: str) -> str:
        """The URL the service under test uses for the migrated database at `url` (an admin URL
        of this server): the service role's, granted what it needs; `url` itself when the role
        could not be created."""
        self.grant_service(url)
        if self.service_role is None:
            return url
        return self.url(conninfo_to_dict(url)["dbname"], self.service_role, self._service_password)

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
        if self.service_role and self.data_dir is None:
            # A server that outlives us: its databases are gone, so the role holds nothing.
            try:
                with psycopg.connect(self.admin_url, autocommit=True) as conn:
                    conn.execute(
                        sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(self.service_role))
                    )
            except psycopg.Error:
                pass
        if self.data_dir is not None:
            embedded.stop(self.data_dir)
            shutil.rmtree(self.data_dir, ignore_errors=True)
        address = _address(self.admin_url)
        if address is not None and _SERVERS.get(address) is self:
            del _SERVERS[address]

    # A stopped and restarted server, for outage tests (only on our own cluster).
    def stop_server(self) -> None:
        assert self.data_dir is not None, "needs the throwaway cluster"
        embedded.stop(self.data_dir)

    def start_server(self) -> None:
        assert self.data_dir is not None, "needs the throwaway cluster"
        embedded.ensure_running(self.data_dir)
