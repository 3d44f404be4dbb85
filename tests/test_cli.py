"""The authsvc command line, run as a user runs it: a subprocess with the environment."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from contextlib import ExitStack

import pytest

from tests import faults, pgbouncer
from tests.conftest import TEST_SECRET, count, latest_migration, migration_count

MIGRATIONS = migration_count("auth", "sessions", "app")

AUTHSVC = [
    shutil.which("authsvc") or sys.executable,
    *([] if shutil.which("authsvc") else ["-m", "authsvc.cli"]),
]


def run(args, env, cwd, timeout=120):
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AUTHSVC_", "DATABASE_URL", "POSTGRES_URL", "AUTH_DATABASE"))
    }
    return subprocess.run(
        [*AUTHSVC, *args],
        env={**clean, **pgbouncer.route(env)},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def env(tmp_path):
    return {"JWT_SECRET_KEY": TEST_SECRET, "AUTHSVC_DATA_DIR": str(tmp_path / "data")}


def test_migrate_is_safe_to_run_twice_from_any_directory(pg, env, tmp_path):
    url = pg.create_database("authsvc_test_cli")
    try:
        first = run(["migrate"], {**env, "DATABASE_URL": url}, cwd=tmp_path)
        assert first.returncode == 0, first.stderr
        assert f"applied {MIGRATIONS} migration(s)" in first.stdout
        second = run(["migrate"], {**env, "DATABASE_URL": url}, cwd="/")
        assert second.returncode == 0, second.stderr
        assert "nothing to apply" in second.stdout
        assert f"schema version: {latest_migration('auth', 'sessions', 'app')}" in second.stdout
    finally:
        pg.drop_database(url)


def test_migrate_runs_on_an_existing_database_with_other_tables(pg, env, tmp_path):
    import psycopg

    url = pg.create_database("authsvc_test_existing")
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE public.orders (id serial PRIMARY KEY)")
            conn.execute("INSERT INTO public.orders DEFAULT VALUES")
        result = run(["migrate"], {**env, "POSTGRES_URL": url}, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT count(*) FROM public.orders").fetchone()[0] == 1
    finally:
        pg.drop_database(url)


def test_concurrent_migrations_from_two_instances_both_succeed(pg, env, tmp_path):
    url = pg.create_database("authsvc_test_race")
    try:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("AUTHSVC_")}
        procs = [
            subprocess.Popen(
                [*AUTHSVC, "migrate"],
                env={**clean, **pgbouncer.route({**env, "DATABASE_URL": url})},
                cwd=tmp_path,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        outputs = [p.communicate(timeout=120) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outputs
        assert sum(f"applied {MIGRATIONS} migration(s)" in out for out, _ in outputs) == 1
    finally:
        pg.drop_database(url)


def test_reconcile_reports_no_drift_on_a_clean_database(database_url, env, tmp_path):
    result = run(["reconcile", "--json"], {**env, "DATABASE_URL": database_url}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["identities_without_profile"] == {"count": 0, "ids": []}
    assert report["profiles_without_identity"] == {"count": 0, "ids": []}
    assert report["grace_seconds"] == 300 and "elapsed_ms" in report


def test_reconcile_finds_and_repairs_an_abandoned_signup(auth, db, database_url, env, tmp_path):
    auth.signup("kept@example.com")
    # A signup that died after its identity: pending, no profile, older than the grace period.
    db.execute(
        "INSERT INTO auth.users (id, email, password_hash, signup_state, created_at) "
        "VALUES (gen_random_uuid(), 'half@example.com', 'x', 'pending', "
        "now() - interval '1 hour')"
    )
    found = run(["reconcile", "--json"], {**env, "DATABASE_URL": database_url}, cwd=tmp_path)
    assert found.returncode == 1
    report = json.loads(found.stdout)
    assert report["identities_without_profile"]["count"] == 1
    repaired = run(
        ["reconcile", "--repair", "--json"], {**env, "DATABASE_URL": database_url}, cwd=tmp_path
    )
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert json.loads(repaired.stdout)["repaired"]["identities_removed"] == 1
    assert count(db, "auth.users") == 1 and count(db, "public.users") == 1


def test_reconcile_leaves_signups_in_flight_alone(db, database_url, env, tmp_path):
    db.execute(
        "INSERT INTO auth.users (id, email, password_hash, signup_state) "
        "VALUES (gen_random_uuid(), 'inflight@example.com', 'x', 'pending')"
    )
    result = run(
        ["reconcile", "--repair", "--json"], {**env, "DATABASE_URL": database_url}, cwd=tmp_path
    )
    assert result.returncode == 0
    assert json.loads(result.stdout)["identities_without_profile"]["count"] == 0
    assert count(db, "auth.users") == 1


def test_reconcile_exits_2_when_it_cannot_run(env, tmp_path):
    result = run(
        ["reconcile", "--json"],
        {
            **env,
            "DATABASE_URL": "postgresql://x:y@127.0.0.1:1/none",
            "AUTHSVC_DB_POOL_TIMEOUT": "1",
        },
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "error" in json.loads(result.stdout)


def test_doctor_passes_on_a_healthy_deployment(database_url, env, tmp_path):
    result = run(["doctor"], {**env, "DATABASE_URL": database_url}, cwd=tmp_path)
    assert result.returncode == 0, result.stdout
    for check in ("configuration", "database", "migrations", "roles", "triggers", "drift"):
        assert f"ok   {check}" in result.stdout


def test_doctor_fails_naming_pending_migrations_and_what_to_do(pg, env, tmp_path):
    url = pg.create_database("authsvc_test_doctor")
    try:
        result = run(["doctor"], {**env, "DATABASE_URL": url}, cwd=tmp_path)
        assert result.returncode == 1
        assert "FAIL migrations" in result.stdout and "authsvc migrate" in result.stdout
    finally:
        pg.drop_database(url)


def test_doctor_flags_a_profile_creating_trigger(database_url, owner_url, env, tmp_path):
    with faults.trigger(
        owner_url, "auth.users", "RETURN NEW;", when="AFTER INSERT", name="handle_new_user"
    ):
        result = run(["doctor"], {**env, "DATABASE_URL": database_url}, cwd=tmp_path)
    assert result.returncode == 1
    assert "FAIL triggers" in result.stdout and "handle_new_user" in result.stdout


def test_doctor_names_the_table_its_role_cannot_write_and_what_to_grant(
    database_url, owner_url, service_role, env, tmp_path
):
    with ExitStack() as stack:
        for privilege in ("SELECT", "INSERT", "UPDATE", "DELETE"):
            stack.enter_context(faults.revoked(owner_url, privilege, "public.users"))
        result = run(["doctor"], {**env, "DATABASE_URL": database_url}, cwd=tmp_path)
    assert result.returncode == 1
    (line,) = [x for x in result.stdout.splitlines() if x.split()[1:2] == ["roles:"]]
    assert line.startswith("FAIL roles:"), result.stdout
    assert f"{service_role} on public.users" in line and "GRANT" in line
    assert "auth.users" not in line  # only what is missing


def test_doctor_names_a_single_missing_privilege(
    database_url, owner_url, service_role, env, tmp_path
):
    with faults.revoked(owner_url, "DELETE", "public.users"):
        result = run(["doctor"], {**env, "DATABASE_URL": database_url}, cwd=tmp_path)
    assert result.returncode == 1
    assert f"{service_role} on public.users" in result.stdout


def test_doctor_fails_on_an_unreachable_database(env, tmp_path):
    result = run(
        ["doctor"],
        {
            **env,
            "DATABASE_URL": "postgresql://x:y@127.0.0.1:1/none",
            "AUTHSVC_DB_POOL_TIMEOUT": "1",
        },
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "FAIL database" in result.stdout


def test_a_production_start_without_a_secret_is_refused_with_a_reason(env, tmp_path):
    result = run(
        ["migrate"],
        {
            "AUTHSVC_ENV": "production",
            "JWT_SECRET_KEY": "weak",
            "DATABASE_URL": "postgresql://x@127.0.0.1:1/x",
        },
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "JWT_SECRET_KEY" in result.stderr
