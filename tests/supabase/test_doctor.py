"""`authsvc doctor` in Supabase mode: key roles, reachability, profile-writing triggers."""

from __future__ import annotations

import psycopg
import pytest

from authsvc.cli import main
from authsvc.stores.supabase.keys import key_problems, key_role
from tests.supabase import fake as sb
from tests.supabase.conftest import migrate_sessions
from tests.supabase.fake import ANON_KEY, SERVICE_KEY, SUPABASE_URL, project_key


def doctor(capsys: pytest.CaptureFixture) -> tuple[int, dict[str, str]]:
    capsys.readouterr()
    status = main(["doctor"])
    out = capsys.readouterr().out
    for secret in (SERVICE_KEY, ANON_KEY):
        assert secret not in out
    lines = {}
    for line in out.splitlines():
        verdict, rest = line[:4].strip(), line[5:]
        name, _, detail = rest.partition(": ")
        lines[name] = f"{verdict} {detail}"
    return status, lines


def test_doctor_passes_with_the_keys_in_their_places(cli_env, fake, capsys):
    status, lines = doctor(capsys)
    assert status == 0, lines
    assert lines["supabase_keys"].startswith("ok")
    assert lines["supabase_auth"].startswith("ok")
    assert lines["profiles_table"].startswith("ok")
    assert lines["triggers"].startswith("ok") and "not the Supabase database" in lines["triggers"]
    assert lines["migrations"].startswith("ok")


def test_doctor_says_when_the_keys_are_swapped(cli_env, fake, capsys):
    cli_env(service_key=ANON_KEY, anon_key=SERVICE_KEY)
    status, lines = doctor(capsys)
    assert status == 1
    assert lines["supabase_keys"].startswith("FAIL")
    assert "swapped" in lines["supabase_keys"]
    # With the anon key in its place, the admin API refuses the service calls.
    assert lines["supabase_auth"].startswith("FAIL")
    assert "auth_key_rejected" in lines["supabase_auth"]


def test_doctor_fails_a_reachability_check_it_cannot_complete(cli_env, fake, capsys):
    fake.fail("select_profiles", sb.permission_denied())
    status, lines = doctor(capsys)
    assert status == 1
    assert lines["profiles_table"].startswith("FAIL")
    assert "permission_denied" in lines["profiles_table"]
    assert "GRANT" in lines["profiles_table"]


@pytest.mark.parametrize(
    ("service", "anon", "problem"),
    [
        (SERVICE_KEY, ANON_KEY, None),
        ("sb_secret_abc123", "sb_publishable_def456", None),
        ("sb_secret_abc123", ANON_KEY, None),
        (ANON_KEY, SERVICE_KEY, "swapped"),
        ("sb_publishable_def456", "sb_secret_abc123", "swapped"),
        (ANON_KEY, ANON_KEY, "SUPABASE_SERVICE_ROLE_KEY is a 'anon' key"),
        (SERVICE_KEY, SERVICE_KEY, "SUPABASE_ANON_KEY is a 'service_role' key"),
        ("not-a-key", ANON_KEY, "not a Supabase API key"),
        (project_key("service_role", "otherprojectref0000"), ANON_KEY, "belongs to project"),
    ],
)
def test_key_problems(service, anon, problem):
    problems = key_problems(SUPABASE_URL, service, anon)
    if problem is None:
        assert problems == []
    else:
        assert any(problem in p for p in problems), problems
    for p in problems:
        assert service not in p and anon not in p


def test_key_role_reads_the_role_claim_without_verifying():
    assert key_role(SERVICE_KEY) == ("service_role", sb.PROJECT_REF)
    assert key_role(ANON_KEY) == ("anon", sb.PROJECT_REF)
    assert key_role("sb_secret_x") == ("service_role", None)
    assert key_role("a.b.c") == (None, None)
    assert key_role(None) == (None, None)


@pytest.fixture
def supabase_database(pg, tmp_path):
    """A database shaped like Supabase's: auth.users owned by Supabase Auth, with the
    handle_new_user trigger that projects often add, and authsvc's sessions beside it."""
    url = pg.create_database("authsvc_test_sbdb")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            """
            CREATE SCHEMA auth;
            CREATE TABLE auth.users (id uuid PRIMARY KEY, email text,
                                     raw_app_meta_data jsonb, raw_user_meta_data jsonb);
            CREATE TABLE public.users (id uuid PRIMARY KEY REFERENCES auth.users ON DELETE CASCADE,
                                       email text NOT NULL, username text, display_name text);
            CREATE FUNCTION public.handle_new_user() RETURNS trigger
                LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
            BEGIN
              INSERT INTO public.users (id, email) VALUES (new.id, new.email);
              RETURN new;
            END $$;
            CREATE TRIGGER on_auth_user_created AFTER INSERT ON auth.users
                FOR EACH ROW EXECUTE PROCEDURE public.handle_new_user();
            CREATE FUNCTION public.audit() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RETURN new; END $$;
            CREATE TRIGGER audit_users AFTER UPDATE ON auth.users
                FOR EACH ROW EXECUTE PROCEDURE public.audit();
            """
        )
    migrate_sessions(url, tmp_path)
    yield url
    pg.drop_database(url)


def test_doctor_finds_a_trigger_that_writes_profiles_itself(
    supabase_database, cli_env, fake, capsys
):
    cli_env(DATABASE_URL=supabase_database)
    status, lines = doctor(capsys)
    assert status == 1
    assert lines["triggers"].startswith("FAIL")
    assert "on_auth_user_created (public.handle_new_user)" in lines["triggers"]
    assert "audit_users" not in lines["triggers"]
    assert "DROP TRIGGER" in lines["triggers"]


def test_doctor_lists_harmless_triggers_without_failing(supabase_database, cli_env, fake, capsys):
    with psycopg.connect(supabase_database, autocommit=True) as conn:
        conn.execute("DROP TRIGGER on_auth_user_created ON auth.users")
    cli_env(DATABASE_URL=supabase_database)
    status, lines = doctor(capsys)
    assert lines["triggers"].startswith("ok") and "audit_users" in lines["triggers"]
    assert status == 0, lines
