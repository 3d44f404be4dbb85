"""The service behind PgBouncer in transaction mode (Debian's, configured as users run it), always,
whatever AUTHSVC_TEST_POOLER says: signup, login, refresh, idempotency, reconcile and a bounded
randomized fault run work through it; `authsvc migrate` and `reconcile --repair` use the direct
URL or refuse; `authsvc doctor` names the setting a failing check needs.

The two failures a pooler in front of the unconfigured service produced, reproduced first:
  FATAL:  unsupported startup parameter: options
  prepared statement "_pg3_0" does not exist
are what the doctor tests below provoke and expect to be explained.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from authsvc import create_app
from authsvc.config import ConfigError, Settings, load_settings, redact_url
from authsvc.errors import SignupFailed
from authsvc.stores import make_stores
from authsvc.stores.pg.schema import _ADVISORY_LOCK_KEY
from tests import faults
from tests.conftest import (
    PASSWORD,
    TEST_SECRET,
    app_overrides,
    assert_no_trace,
    migrate,
    migration_count,
    truncate,
)
from tests.pgbouncer import PGBOUNCER, PgBouncer, bouncer_for, through_pgbouncer
from tests.pgcluster import PgServer
from tests.reliability.conftest import (
    _throwaway_cluster,
    chaos_seed,  # noqa: F401 - the randomized run's seed
)
from tests.reliability.support import Layout, cli, start_server, unique_email
from tests.reliability.test_randomized import HELD_STEPS, INJECTIONS, PLAIN, chaos
from tests.service import Gunicorn, service_env, wait_for

MIGRATIONS = migration_count("auth", "sessions", "app")

pytestmark = pytest.mark.skipif(
    not Path(PGBOUNCER).exists(), reason="needs Debian's pgbouncer: bash scripts/install.sh --test"
)


@pytest.fixture(scope="module")
def bouncer(pg: PgServer) -> PgBouncer:
    return bouncer_for(pg.admin_url)


@pytest.fixture(scope="module")
def one_owner(pg: PgServer) -> Iterator[str]:
    """A migrated database of this module's own (its server-side settings are ours to change),
    as its owner: for faults and raw-SQL assertions."""
    url = pg.create_database("authsvc_pooler")
    migrate(url)
    yield url
    pg.drop_database(url)


@pytest.fixture(scope="module")
def one(pg: PgServer, one_owner: str) -> str:
    """The same database as the service connects to it (the non-superuser service role)."""
    return pg.service_url(one_owner)


@pytest.fixture
def clean_one(one: str, one_owner: str) -> str:
    truncate(one_owner)
    return one


def behind(url: str, auth_url: str | None = None) -> dict[str, str]:
    """The configuration of a service whose databases are reached through PgBouncer."""
    return through_pgbouncer({"DATABASE_URL": url, "AUTH_DATABASE_URL": auth_url or url})


def lines(output: str) -> dict[str, str]:
    """`authsvc doctor`'s lines by check name: {"pooler": "ok   pooler: ..."}."""
    return {
        m.group(2): line
        for line in output.splitlines()
        if (m := re.match(r"(ok  |FAIL) ([a-z ()_]+):", line))
    }


# -- settings -------------------------------------------------------------------------------

POOLED = "postgresql://svc:pooled-secret@pooler.example.com:6543/postgres"
DIRECT = "postgresql://svc:direct-secret@db.example.com:5432/postgres"


def settings(**env: str) -> Settings:
    base = {
        "DATABASE_URL": "",
        "AUTH_DATABASE_URL": "",
        "POSTGRES_URL": "",
        "DATABASE_DIRECT_URL": "",
        "AUTH_DATABASE_DIRECT_URL": "",
        "AUTHSVC_DB_POOLER": "",
        "JWT_SECRET_KEY": TEST_SECRET,
    }
    return load_settings({**base, **env})


def test_the_pooler_setting_is_none_or_transaction_and_a_wrong_one_says_so():
    assert settings(DATABASE_URL=DIRECT).db_pooler == "none"
    assert settings(DATABASE_URL=POOLED, AUTHSVC_DB_POOLER="transaction").db_pooler == (
        "transaction"
    )
    with pytest.raises(ConfigError, match="AUTHSVC_DB_POOLER must be none or transaction"):
        settings(DATABASE_URL=POOLED, AUTHSVC_DB_POOLER="session")


def test_supavisors_transaction_port_without_the_setting_is_pointed_out_at_start():
    warned = settings(DATABASE_URL=POOLED).warnings
    assert any("AUTHSVC_DB_POOLER=transaction" in w for w in warned), warned
    assert not settings(DATABASE_URL=POOLED, AUTHSVC_DB_POOLER="transaction").warnings


def test_direct_settings_take_the_direct_urls_or_name_the_one_missing():
    one = settings(DATABASE_URL=POOLED, DATABASE_DIRECT_URL=DIRECT, AUTHSVC_DB_POOLER="transaction")
    direct = one.direct("`authsvc migrate`")
    assert (direct.database_url, direct.auth_database_url, direct.db_pooler) == (
        DIRECT,
        DIRECT,
        "none",
    )
    assert "direct-secret" not in repr(one) and "pooled-secret" not in repr(one)

    auth_pooled = POOLED.replace("/postgres", "/auth")
    split = settings(
        DATABASE_URL=POOLED,
        AUTH_DATABASE_URL=auth_pooled,
        DATABASE_DIRECT_URL=DIRECT,
        AUTHSVC_DB_POOLER="transaction",
    )
    with pytest.raises(ConfigError) as info:
        split.direct("`authsvc migrate`")
    assert "Set AUTH_DATABASE_DIRECT_URL to the direct" in str(info.value)

    # Without a pooler the direct URL is used when given, and nothing is refused without one.
    assert settings(DATABASE_URL=POOLED.replace("6543", "5432")).direct("x").database_url == (
        POOLED.replace("6543", "5432")
    )
    with pytest.raises(ConfigError, match="DATABASE_URL is not"):
        settings(DATABASE_DIRECT_URL=DIRECT)


def test_the_store_refuses_to_take_the_migration_lock_through_the_pooler(pg, bouncer):
    """Whoever calls migrate() with the pooled settings (not Settings.direct()) is stopped
    before any lock or DDL, with the variable to set."""
    app_url = pg.create_database("authsvc_pooler_guard")
    auth_url = pg.create_database("authsvc_pooler_guard_auth")
    try:
        for env, variable in (
            ({"DATABASE_URL": bouncer.url(app_url)}, "DATABASE_DIRECT_URL"),
            (
                {"DATABASE_URL": bouncer.url(app_url), "AUTH_DATABASE_URL": bouncer.url(auth_url)},
                "AUTH_DATABASE_DIRECT_URL",
            ),
        ):
            stores = make_stores(settings(AUTHSVC_DB_POOLER="transaction", **env))
            try:
                with pytest.raises(ConfigError, match=f"set {variable}"):
                    stores.admin.migrate()
            finally:
                stores.close()
        for url in (app_url, auth_url):
            with psycopg.connect(url, autocommit=True) as conn:
                assert conn.execute("SELECT to_regclass('auth.users')").fetchone()[0] is None
    finally:
        pg.drop_database(app_url)
        pg.drop_database(auth_url)


# -- the two failures, and what doctor says about them --------------------------------------


def test_doctor_names_the_setting_when_the_pooler_refuses_the_timeout_startup_parameter(
    clean_one, tmp_path
):
    env = behind(clean_one)
    del env["AUTHSVC_DB_POOLER"]
    result = cli(env, "doctor", data_dir=tmp_path)
    assert result.code == 1, result
    pooler = lines(result.stdout)["pooler"]
    assert pooler.startswith("FAIL")
    assert "unsupported startup parameter: options" in pooler
    assert "set AUTHSVC_DB_POOLER=transaction" in pooler


def test_doctor_names_the_setting_when_a_prepared_statement_is_gone_in_the_next_transaction(
    clean_one, tmp_path
):
    env = behind(clean_one)
    del env["AUTHSVC_DB_POOLER"]
    # No timeout, so no startup parameter: the connection gets through, prepared statements
    # are the next wall.
    env["AUTHSVC_DB_STATEMENT_TIMEOUT_MS"] = "0"
    result = cli(env, "doctor", data_dir=tmp_path)
    assert result.code == 1, result
    pooler = lines(result.stdout)["pooler"]
    assert pooler.startswith("FAIL")
    assert 'prepared statement "_pg3_0" does not exist' in pooler
    assert "set AUTHSVC_DB_POOLER=transaction" in pooler


def test_doctor_passes_behind_the_pooler_with_the_setting_the_timeout_and_a_direct_url(
    clean_one, tmp_path
):
    result = cli(behind(clean_one), "doctor", data_dir=tmp_path)
    assert result.code == 0, result
    checks = lines(result.stdout)
    pids = re.search(r"ran on server connections (\d+) and (\d+)", checks["pooler"])
    assert pids and pids[1] != pids[2], checks["pooler"]  # the two transactions really moved
    assert (
        checks["statement timeout"].startswith("ok") and "15000 ms" in checks["statement timeout"]
    )
    assert checks["direct url"].startswith("ok")


def test_doctor_fails_without_a_server_side_timeout_or_a_direct_url_and_says_what_to_run(
    pg, bouncer, tmp_path
):
    url = pg.create_database("authsvc_pooler_bare")
    try:
        migrate(url)
        with psycopg.connect(url, autocommit=True) as conn:  # whatever the suite's switch set
            conn.execute(f'ALTER DATABASE "{url.rsplit("/", 1)[1]}" RESET statement_timeout')
        service_url = pg.service_url(url)
        env = {"DATABASE_URL": bouncer.url(service_url), "AUTHSVC_DB_POOLER": "transaction"}
        result = cli(env, "doctor", data_dir=tmp_path)
        assert result.code == 1, result
        checks = lines(result.stdout)
        assert checks["pooler"].startswith("ok")
        assert checks["statement timeout"].startswith("FAIL")
        # The statement to run names the role the service connects as.
        role = conninfo_to_dict(service_url)["user"]
        assert f"ALTER ROLE {role} SET statement_timeout = '15000ms'" in checks["statement timeout"]
        assert checks["direct url"].startswith("FAIL")
        assert "set DATABASE_DIRECT_URL" in checks["direct url"]

        # The direct URL pointing at the pooler too is no better.
        env["DATABASE_DIRECT_URL"] = env["DATABASE_URL"]
        again = lines(cli(env, "doctor", data_dir=tmp_path).stdout)
        assert again["direct url"].startswith("FAIL")
        assert "point it at the database itself" in again["direct url"]
    finally:
        pg.drop_database(url)


# -- the service through the pooler ---------------------------------------------------------


def test_signup_login_refresh_and_me_through_the_pooler_all_succeed(clean_one, bouncer, tmp_path):
    """Each of three client connections runs every statement far more often than psycopg's
    prepare threshold (5), and its transactions land on several server connections."""
    env = behind(clean_one)
    app = create_app(
        app_overrides(env.pop("DATABASE_URL"), tmp_path, AUTHSVC_DB_POOL_SIZE="3", **env)
    )
    client = app.test_client()

    def journey(i: int) -> list[int]:
        email = f"pooled-{i}@example.com"
        statuses = []
        signed = client.post("/api/v1/auth/signup", json={"email": email, "password": PASSWORD})
        statuses.append(signed.status_code)
        for _ in range(3):
            login = client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
            statuses.append(login.status_code)
            session = (login.get_json().get("data") or {}).get("session") or {}
            refreshed = client.post(
                "/api/v1/auth/refresh", json={"refresh_token": session.get("refresh_token")}
            )
            statuses.append(refreshed.status_code)
            token = ((refreshed.get_json().get("data") or {}).get("session") or {}).get(
                "access_token"
            )
            me = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
            statuses.append(me.status_code)
        return statuses

    try:
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(journey, range(24)))
    finally:
        app.extensions["authsvc"].stores.close()
    assert all(r == [201] + [200] * 9 for r in results), results
    dbname = clean_one.rsplit("/", 1)[1]
    servers = [s for s in bouncer.console("SHOW SERVERS") if s["database"] == dbname]
    assert len(servers) >= 2, servers


@pytest.mark.parametrize("path", ["pgbouncer", "direct"])
def test_a_slow_statement_is_cut_by_the_statement_timeout_through_the_pooler_or_not(
    pg, bouncer, tmp_path, path
):
    """Behind the pooler the timeout is the server's (ALTER DATABASE/ROLE ... SET); without one
    it still goes with the connection."""
    url = pg.create_database("authsvc_pooler_timeout")
    try:
        migrate(url)
        service_url = pg.service_url(url)
        if path == "pgbouncer":
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(
                    f"ALTER DATABASE \"{url.rsplit('/', 1)[1]}\" SET statement_timeout = '300ms'"
                )
            overrides = app_overrides(
                bouncer.url(service_url),
                tmp_path,
                DATABASE_DIRECT_URL=service_url,
                AUTHSVC_DB_POOLER="transaction",
            )
        else:
            # With its direct URL given, the suite's AUTHSVC_TEST_POOLER leaves it direct.
            overrides = app_overrides(
                service_url,
                tmp_path,
                DATABASE_DIRECT_URL=service_url,
                AUTHSVC_DB_STATEMENT_TIMEOUT_MS="300",
            )
        app = create_app(overrides)
        try:
            with faults.profile_insert_sleeps(url, 3):
                reply = app.test_client().post(
                    "/api/v1/auth/signup", json={"email": "slow@example.com", "password": PASSWORD}
                )
        finally:
            app.extensions["authsvc"].stores.close()
        body = reply.get_json()
        assert reply.status_code == 500 and body["error"]["code"] == SignupFailed.code, body
        assert body["error"]["details"]["step"] == "profile_insert"
        assert body["error"]["details"]["reason"] == "statement_timeout"
        with psycopg.connect(url, autocommit=True, row_factory=psycopg.rows.dict_row) as db:
            assert_no_trace(db, "slow@example.com")
    finally:
        pg.drop_database(url)


# -- commands that need a session of their own ----------------------------------------------


@pytest.mark.parametrize("layout", ["one", "split"])
def test_migrate_through_the_pooler_without_a_direct_url_refuses_and_names_the_variable(
    pg, tmp_path, layout
):
    urls = [pg.create_database("authsvc_pooler_nomig")]
    if layout == "split":
        urls.append(pg.create_database("authsvc_pooler_nomig_auth"))
    try:
        env = behind(urls[0], urls[-1])
        missing = "AUTH_DATABASE_DIRECT_URL" if layout == "split" else "DATABASE_DIRECT_URL"
        del env[missing]
        result = cli(env, "migrate", data_dir=tmp_path)
        assert result.code == 2, result
        assert f"Set {missing} to the direct" in result.stderr
        for url in urls:  # nothing was applied anywhere
            with psycopg.connect(url, autocommit=True) as conn:
                assert conn.execute("SELECT to_regclass('auth.users')").fetchone()[0] is None
    finally:
        for url in urls:
            pg.drop_database(url)


def test_migrate_takes_its_advisory_lock_on_the_direct_connection(pg, bouncer, tmp_path):
    url = pg.create_database("authsvc_pooler_lock")
    holder = psycopg.connect(url, autocommit=True)
    proc = None
    try:
        holder.execute("SELECT pg_advisory_lock(%s)", (_ADVISORY_LOCK_KEY,))
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AUTHSVC_", "DATABASE_", "AUTH_DATABASE_", "POSTGRES_"))
        }
        env.update(behind(url), JWT_SECRET_KEY=TEST_SECRET, AUTHSVC_DATA_DIR=str(tmp_path))
        proc = subprocess.Popen(
            [sys.executable, "-m", "authsvc.cli", "migrate"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

        def waiting() -> list[int]:
            return [
                r[0]
                for r in holder.execute(
                    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND "
                    "database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                ).fetchall()
            ]

        (waiter,) = wait_for(waiting, 30, "migrate to wait for the advisory lock")
        assert proc.poll() is None  # it waits for the lock we hold
        pooled_backends = {s["remote_pid"] for s in bouncer.console("SHOW SERVERS")}
        assert waiter not in pooled_backends  # the lock is asked for on the direct connection
        holder.execute("SELECT pg_advisory_unlock(%s)", (_ADVISORY_LOCK_KEY,))
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert f"applied {MIGRATIONS} migration(s)" in out
        # It says which database it migrated: the direct one, not the pooler in DATABASE_URL.
        assert f"database {redact_url(url)} (DATABASE_DIRECT_URL)" in err
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        holder.close()
        pg.drop_database(url)


def test_reconcile_reads_through_the_pooler_and_repairs_only_on_the_direct_url(
    clean_one, one_owner, tmp_path
):
    with psycopg.connect(one_owner, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO auth.users (id, email, password_hash, signup_state, created_at) "
            "VALUES (gen_random_uuid(), 'abandoned@example.com', 'x', 'pending', "
            "now() - interval '1 hour')"
        )
    env = behind(clean_one)
    found = cli(env, "reconcile", "--json", data_dir=tmp_path)
    assert found.code == 1, found
    assert found.json["identities_without_profile"]["count"] == 1
    assert f"database {redact_url(env['DATABASE_URL'])} (DATABASE_URL)" in found.stderr

    without_direct = {k: v for k, v in env.items() if k != "DATABASE_DIRECT_URL"}
    refused = cli(without_direct, "reconcile", "--repair", data_dir=tmp_path)
    assert refused.code == 2, refused
    assert "Set DATABASE_DIRECT_URL" in refused.stderr
    with psycopg.connect(one_owner, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM auth.users").fetchone()[0] == 1

    repaired = cli(env, "reconcile", "--repair", "--json", data_dir=tmp_path)
    assert repaired.code == 0, repaired
    assert repaired.json["repaired"]["identities_removed"] == 1
    assert f"database {redact_url(clean_one)} (DATABASE_DIRECT_URL)" in repaired.stderr
    with psycopg.connect(one_owner, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM auth.users").fetchone()[0] == 0


def test_serve_through_the_pooler_without_a_direct_url_refuses_before_serving(clean_one, tmp_path):
    env = {k: v for k, v in behind(clean_one).items() if k != "DATABASE_DIRECT_URL"}
    result = cli(env, "serve", "--port", "1", data_dir=tmp_path, timeout=60)
    assert result.code == 2, result
    assert "`authsvc serve`, which migrates first, needs a direct connection" in result.stderr
    assert "Set DATABASE_DIRECT_URL" in result.stderr


# -- under gunicorn: idempotency and a bounded randomized fault run -------------------------


@pytest.fixture(scope="module")
def outage_cluster() -> Iterator[PgServer]:
    """A cluster of this module's own: the fault run stops and starts it."""
    server = _throwaway_cluster()
    yield server
    try:
        start_server(server)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def pooled_layouts(outage_cluster: PgServer) -> dict[str, Layout]:
    one = outage_cluster.create_database("authsvc_pooled")
    migrate(one)
    app_url = outage_cluster.create_database("authsvc_pooled_app")
    auth_url = outage_cluster.create_database("authsvc_pooled_auth")
    migrate(app_url, auth_url)
    server = outage_cluster  # both layouts on it: stopping it takes both databases down
    service_one = server.service_url(one)
    return {
        "one": Layout(
            "pgbouncer-one",
            one,
            one,
            service_one,
            service_one,
            app_server=server,
            auth_server=server,
        ),
        "split": Layout(
            "pgbouncer-split",
            app_url,
            auth_url,
            server.service_url(app_url),
            server.service_url(auth_url),
            app_server=server,
            auth_server=server,
        ),
    }


def pooled_env(layout: Layout) -> dict[str, str]:
    """The layout's settings as the service gets them: through PgBouncer, direct URLs beside."""
    return behind(layout.service_app_url, layout.service_auth_url)


@pytest.fixture(scope="module")
def pooled_services() -> Iterator[dict[str, Gunicorn]]:
    running: dict[str, Gunicorn] = {}
    yield running
    for service in running.values():
        service.stop()


@pytest.fixture(params=["one", "split"])
def pooled(request, pooled_layouts, pooled_services, tmp_path_factory) -> tuple[Layout, Gunicorn]:
    """(layout, gunicorn with 2 workers reaching it through PgBouncer), tables emptied."""
    layout = pooled_layouts[request.param]
    for server in layout.servers():
        start_server(server)
    layout.truncate()
    service = pooled_services.get(request.param)
    if service is None:
        data_dir = tmp_path_factory.mktemp(f"pooled-{request.param}")
        env = service_env(data_dir, **pooled_env(layout), AUTHSVC_DB_POOL_TIMEOUT="2")
        service = Gunicorn.started(env, log_path=data_dir / "gunicorn.log", name=layout.name)
        pooled_services[request.param] = service
    elif not service.running:
        service.restart()
    return layout, service


def test_concurrent_signups_with_one_idempotency_key_through_the_pooler_make_one_account(pooled):
    layout, service = pooled
    email = unique_email("pooled-key")
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda _: service.signup(email, key="pooled-key"), range(8)))
    assert [r.status for r in replies] == [201] * 8, [r.body for r in replies]
    assert len({r.user_id for r in replies}) == 1
    again = service.signup(email, key="pooled-key")
    assert again.status == 201 and again.user_id == replies[0].user_id
    assert len(layout.identities()) == len(layout.profiles()) == 1
    assert service.login(email).status == 200


def _bounded_schedule(rng: random.Random) -> list[tuple[str, ...]]:
    """Every injection once at every held step and three of the plain faults, each after a
    clean round: a few hundred signups."""
    faulty: list[tuple[str, ...]] = [("held", i, s) for i in INJECTIONS for s in HELD_STEPS]
    faulty += [("plain", k) for k in rng.sample(sorted(PLAIN), 3)]
    rng.shuffle(faulty)
    out: list[tuple[str, ...]] = []
    for spec in faulty:
        out += [("clean",), spec]
    return [*out, ("clean",)]


@pytest.mark.slow
def test_randomized_faults_through_the_pooler_never_leave_half_a_user(
    pooled,
    tmp_path,
    chaos_seed,  # noqa: F811 - the fixture imported above
):
    """The reliability suite's run (its assertions, its report), on a shorter schedule."""
    layout, service = pooled
    chaos(layout, service, tmp_path, _bounded_schedule, chaos_seed, cli_env=pooled_env(layout))


def test_a_write_the_pooler_refused_before_it_ran_is_tried_again(clean_one, one_owner, bouncer):
    """After a failed server login PgBouncer answers every statement that needs a new server
    connection with 08P01 "server login has been failing" for server_login_retry (1 s here):
    nothing ran, so even a write is tried again within the pool time-out instead of failing
    (a database restarting under a split signup's profile insert)."""
    from authsvc.stores.pg.database import Database

    settings = load_settings({**behind(clean_one), "JWT_SECRET_KEY": TEST_SECRET})
    db = Database.from_settings(settings.database_url, "database", settings)
    role = conninfo_to_dict(clean_one)["user"]
    dbname = conninfo_to_dict(clean_one)["dbname"]

    def set_login(allowed: bool) -> None:
        with psycopg.connect(one_owner, autocommit=True) as conn:
            conn.execute(f'ALTER ROLE "{role}" {"LOGIN" if allowed else "NOLOGIN"}')
            if not allowed:
                # The pooler's server connections of the role go; new ones must log in.
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE usename = %s AND datname = %s",
                    (role, dbname),
                )

    try:
        assert db.execute("UPDATE auth.users SET last_sign_in_at = now() WHERE false") == 0
        set_login(False)
        wait_for(
            lambda: not [s for s in bouncer.console("SHOW SERVERS") if s["database"] == dbname],
            10,
            "the pooler to drop its server connections",
        )
        with pytest.raises(psycopg.Error) as refused:
            with psycopg.connect(bouncer.url(clean_one), autocommit=True) as probe:
                probe.execute("SELECT 1")
        set_login(True)
        # Within server_login_retry the pooler still refuses, before running anything.
        with pytest.raises(psycopg.Error) as still:
            with psycopg.connect(bouncer.url(clean_one), autocommit=True) as probe:
                probe.execute("SELECT 1")
        assert "server login has been failing" in str(still.value), (refused.value, still.value)
        assert (still.value.sqlstate or "").startswith("08")
        # The service's write meets the same refusal first, and is tried again.
        assert db.execute("UPDATE auth.users SET last_sign_in_at = now() WHERE false") == 0
    finally:
        set_login(True)
        db.close()
