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


UNREACHABLE = {"DATABASE_URL": "postgresql://x:y@127.0.0.1:1/none", "AUTHSVC_DB_POOL_TIMEOUT": "1"}


@pytest.mark.parametrize(
    "args", [["purge", "--json"], ["users", "list", "--json"], ["users", "show", "a@b.c", "--json"]]
)
def test_every_json_command_that_cannot_run_still_prints_one_json_object(env, tmp_path, args):
    result = run(args, {**env, **UNREACHABLE}, cwd=tmp_path)
    assert result.returncode == 2
    # What the connection attempt met, not only that it failed.
    assert "Connection refused" in json.loads(result.stdout)["error"]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("url", ["notaurl", "mysql://app:secret@db.internal/app"])
@pytest.mark.parametrize("command", ["migrate", "purge", "reconcile"])
def test_a_database_url_that_is_not_postgres_is_named_without_a_traceback(
    env, tmp_path, url, command
):
    result = run([command], {**env, "DATABASE_URL": url}, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "DATABASE_URL must be a postgresql://" in result.stderr
    assert "secret" not in result.stderr


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


# -- the layout of today: a database migrated as one database, then split ----------------------

PROFILE_KEYS = (
    "SELECT conname FROM pg_constraint WHERE contype = 'f' "
    "AND conrelid = 'public.users'::regclass AND confrelid = 'auth.users'::regclass"
)


def sql(url, query, params=()):
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else None


@pytest.fixture
def split_after_one(pg, env, tmp_path):
    """(env of the split layout, app database, identity database): the app database migrated
    as one database first, one identity and its profile in it, then the split configured."""
    app = pg.create_database("authsvc_test_was_one")
    auth = pg.create_database("authsvc_test_now_auth")
    try:
        first = run(["migrate"], {**env, "DATABASE_URL": app}, cwd=tmp_path)
        assert first.returncode == 0, first.stderr
        sql(
            app,
            "WITH i AS (INSERT INTO auth.users (id, email, password_hash, signup_state) "
            "VALUES (gen_random_uuid(), 'old@example.com', 'x', 'complete') RETURNING id) "
            "INSERT INTO public.users (id, email) SELECT id, 'old@example.com' FROM i",
        )
        yield {**env, "DATABASE_URL": app, "AUTH_DATABASE_URL": auth}, app, auth
    finally:
        pg.drop_database(app)
        pg.drop_database(auth)


def test_migrate_into_the_split_layout_drops_the_key_to_the_unused_identities_and_says_so(
    split_after_one, tmp_path
):
    from authsvc.config import load_settings
    from authsvc.passwords import Hasher
    from authsvc.services import signup
    from authsvc.stores import make_stores

    split, app, auth = split_after_one
    migrated = run(["migrate"], split, cwd=tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    assert "layout: dropped the foreign key users_id_fkey" in migrated.stdout
    assert "auth.users still holds 1 identity, not used in the split layout" in migrated.stdout
    assert sql(app, PROFILE_KEYS) == []
    assert sql(app, "SELECT count(*) FROM auth.users") == [(1,)]  # not migrate's to move
    again = run(["migrate"], split, cwd=tmp_path)
    assert again.returncode == 0 and "nothing to apply" in again.stdout
    assert "dropped" not in again.stdout and "still holds 1 identity" in again.stdout
    # And a signup now works: both halves, each in its own database.
    stores = make_stores(load_settings({**split, "AUTHSVC_ENV": "development"}))
    try:
        profile = signup.run(
            stores,
            Hasher(1, 8, 1),
            signup.SignupData("split3@example.com", "correct horse battery staple 9"),
        )
    finally:
        stores.close()
    assert sql(auth, "SELECT signup_state FROM auth.users WHERE id = %s", (profile.id,)) == [
        ("complete",)
    ]
    assert sql(app, "SELECT email FROM public.users WHERE id = %s", (profile.id,)) == [
        ("split3@example.com",)
    ]


def test_doctor_in_the_split_layout_fails_on_the_key_and_names_the_unused_identities(
    split_after_one, tmp_path
):
    split, app, _ = split_after_one
    assert run(["migrate"], split, cwd=tmp_path).returncode == 0
    # The key as the first migration made it, back in place: what a split deployment that has
    # not run this migrate has.
    sql(
        app,
        "ALTER TABLE public.users ADD CONSTRAINT users_id_fkey FOREIGN KEY (id) "
        "REFERENCES auth.users (id) ON DELETE CASCADE",
    )
    sick = run(["doctor"], split, cwd=tmp_path)
    assert sick.returncode == 1, sick.stdout
    (layout,) = [x for x in sick.stdout.splitlines() if x.split()[1:2] == ["layout:"]]
    assert layout.startswith("FAIL layout:") and "users_id_fkey" in layout
    assert "run `authsvc migrate`" in layout
    (unused,) = [x for x in sick.stdout.splitlines() if x.split()[1:2] == ["unused_identities:"]]
    assert unused.startswith("FAIL") and "holds 1 identity" in unused
    assert run(["migrate"], split, cwd=tmp_path).returncode == 0
    sql(app, "DELETE FROM auth.users")  # moved elsewhere by the operator
    healthy = run(["doctor"], split, cwd=tmp_path)
    assert healthy.returncode == 0, healthy.stdout  # its profile is inside the grace period
    assert "ok   layout: split" in healthy.stdout
    assert "ok   unused_identities" in healthy.stdout


def test_migrate_back_into_one_database_gives_the_key_back_once_every_profile_has_its_identity(
    pg, env, tmp_path
):
    app = pg.create_database("authsvc_test_was_split")
    auth = pg.create_database("authsvc_test_was_split_auth")
    try:
        split = {**env, "DATABASE_URL": app, "AUTH_DATABASE_URL": auth}
        assert run(["migrate"], split, cwd=tmp_path).returncode == 0
        sql(app, "INSERT INTO public.users (id, email) VALUES (gen_random_uuid(), 'p@x.org')")
        one = {**env, "DATABASE_URL": app}
        blocked = run(["migrate"], one, cwd=tmp_path)
        assert blocked.returncode == 0, blocked.stderr
        assert "1 profile(s) have no identity in this database" in blocked.stdout
        assert sql(app, PROFILE_KEYS) == []
        sql(
            app,
            "INSERT INTO auth.users (id, email, signup_state) "
            "SELECT id, email, 'complete' FROM public.users",
        )
        moved = run(["migrate"], one, cwd=tmp_path)
        assert "layout: added the foreign key users_id_fkey" in moved.stdout
        assert sql(app, PROFILE_KEYS) == [("users_id_fkey",)]
    finally:
        pg.drop_database(app)
        pg.drop_database(auth)


def test_reconcile_leaves_the_profiles_alone_while_the_split_layout_is_not_settled(
    split_after_one, tmp_path
):
    """Split without moving the identities: every old profile lacks its identity in
    AUTH_DATABASE_URL. A repair then would delete them all; it waits for the operator."""
    split, app, _ = split_after_one
    assert run(["migrate"], split, cwd=tmp_path).returncode == 0
    now = {**split, "AUTHSVC_RECONCILE_GRACE_SECONDS": "0"}
    held = run(["reconcile", "--repair", "--json"], now, cwd=tmp_path)
    assert held.returncode == 1, held.stderr  # drift remains
    report = json.loads(held.stdout)
    assert report["profiles_without_identity"]["count"] == 1
    (why,) = report["held_back"]["profiles_without_identity"]
    assert "still holds 1 identity" in why
    assert report["repaired"]["profiles_removed"] == 0
    assert sql(app, "SELECT email FROM public.users") == [("old@example.com",)]
    human = run(["reconcile", "--repair"], now, cwd=tmp_path)
    assert "profiles without an identity left alone: " in human.stdout
    # The operator settles it (here: those identities are let go), and the repair goes ahead.
    sql(app, "DELETE FROM auth.users")
    settled = run(["reconcile", "--repair", "--json"], now, cwd=tmp_path)
    assert settled.returncode == 0, settled.stdout + settled.stderr
    assert json.loads(settled.stdout)["repaired"]["profiles_removed"] == 1
    assert sql(app, "SELECT count(*) FROM public.users") == [(0,)]


@pytest.mark.parametrize("command", [["migrate"], ["purge", "--json"], ["users", "list"]])
def test_a_database_the_server_refuses_is_named_with_what_the_server_said(
    pg, env, tmp_path, command
):
    """A database or role that does not exist, a refused password: retrying fixes none of
    them, so the command says what the server answered, not "retry in a few seconds"."""
    url = pg.create_database("authsvc_test_refused")
    pg.drop_database(url)
    result = run(command, {**env, "DATABASE_URL": url, "AUTHSVC_DB_POOL_TIMEOUT": "1"}, tmp_path)
    assert result.returncode == 2
    said = f'database "{url.rsplit("/", 1)[1]}" does not exist'
    assert said in result.stderr and "retry in a few seconds" not in result.stderr
    if "--json" in command:
        assert said in json.loads(result.stdout)["error"]
    doctor = run(["doctor"], {**env, "DATABASE_URL": url, "AUTHSVC_DB_POOL_TIMEOUT": "1"}, tmp_path)
    assert doctor.returncode == 1 and "FAIL connection: DATABASE_URL" in doctor.stdout
    assert said in doctor.stdout
