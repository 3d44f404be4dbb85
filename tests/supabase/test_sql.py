"""The SQL in supabase/migrations, applied to a database shaped like a Supabase project's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import psycopg
import pytest

SQL = next((Path(__file__).parents[2] / "supabase" / "migrations").glob("*_authsvc_profiles.sql"))
ROLES = {
    "anon": "NOLOGIN",
    "authenticated": "NOLOGIN",
    "service_role": "NOLOGIN BYPASSRLS",
}

# What a Supabase database provides before any project SQL runs: the API roles, auth.users,
# and auth.uid() reading the JWT's `sub` that PostgREST puts in request.jwt.claims.
SUPABASE_SHAPE = """
CREATE SCHEMA auth;
CREATE TABLE auth.users (id uuid PRIMARY KEY, email text);
CREATE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE AS $$
  SELECT nullif(current_setting('request.jwt.claims', true)::jsonb ->> 'sub', '')::uuid
$$;
GRANT USAGE ON SCHEMA auth TO anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION auth.uid() TO anon, authenticated, service_role;
GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role;
"""


@pytest.fixture
def project(pg) -> Iterator[psycopg.Connection]:
    created_roles = []
    with psycopg.connect(pg.admin_url, autocommit=True) as admin:
        if not admin.execute(
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
        ).fetchone()[0]:
            pytest.skip("creating Supabase's API roles needs a superuser on the test server")
        for role, options in ROLES.items():
            if (
                admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
                is None
            ):
                admin.execute(f"CREATE ROLE {role} {options}")
                created_roles.append(role)
    url = pg.create_database("authsvc_test_sql")
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(SUPABASE_SHAPE)
            yield conn
    finally:
        pg.drop_database(url)
        with psycopg.connect(pg.admin_url, autocommit=True) as admin:
            for role in created_roles:
                admin.execute(f"DROP ROLE {role}")


def as_role(conn: psycopg.Connection, role: str, sub: str | None = None) -> None:
    conn.execute("RESET ROLE")
    claims = f'{{"sub": "{sub}", "role": "{role}"}}' if sub else "{}"
    conn.execute("SELECT set_config('request.jwt.claims', %s, false)", (claims,))
    conn.execute(f"SET ROLE {role}")


def test_the_profile_sql_applies_twice_and_enforces_its_policies(project):
    conn = project
    sql = SQL.read_text()
    conn.execute(sql)
    conn.execute(sql)  # safe to run twice

    alice, bob = str(uuid4()), str(uuid4())
    conn.execute("INSERT INTO auth.users VALUES (%s, 'a@x.io'), (%s, 'b@x.io')", (alice, bob))

    # Only the service role inserts, with the explicit UUID, and gets the row back.
    as_role(conn, "service_role")
    row = conn.execute(
        "INSERT INTO public.users (id, email, username) VALUES (%s, 'a@x.io', 'alice') "
        "RETURNING id",
        (alice,),
    ).fetchone()
    assert str(row[0]) == alice
    conn.execute("INSERT INTO public.users (id, email) VALUES (%s, 'b@x.io')", (bob,))
    with pytest.raises(psycopg.errors.UniqueViolation) as taken:
        conn.execute("UPDATE public.users SET username = 'alice' WHERE id = %s", (bob,))
    assert taken.value.diag.constraint_name == "users_username_key"
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        conn.execute("INSERT INTO public.users (id, email) VALUES (%s, 'c@x.io')", (str(uuid4()),))

    # A signed-in user sees and changes only their own row, and cannot create one.
    as_role(conn, "authenticated", alice)
    assert [str(r[0]) for r in conn.execute("SELECT id FROM public.users")] == [alice]
    assert (
        conn.execute("UPDATE public.users SET display_name = 'A' WHERE id = %s", (bob,)).rowcount
        == 0
    )
    assert (
        conn.execute("UPDATE public.users SET display_name = 'A' WHERE id = %s", (alice,)).rowcount
        == 1
    )
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("UPDATE public.users SET email = 'new@x.io' WHERE id = %s", (alice,))
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("INSERT INTO public.users (id, email) VALUES (%s, 'a@x.io')", (alice,))
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("DELETE FROM public.users WHERE id = %s", (alice,))

    # The anonymous role sees nothing at all.
    as_role(conn, "anon")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT id FROM public.users")

    # Deleting the Supabase user takes the profile with it.
    conn.execute("RESET ROLE")
    conn.execute("DELETE FROM auth.users WHERE id = %s", (bob,))
    assert conn.execute("SELECT count(*) FROM public.users").fetchone()[0] == 1


USERNAME_CHECK_SQL = next(
    (Path(__file__).parents[2] / "supabase" / "migrations").glob("*_authsvc_username_check.sql")
)


def _username_check_validated(conn: psycopg.Connection) -> bool | None:
    row = conn.execute(
        "SELECT convalidated FROM pg_constraint WHERE conname = 'users_username_check' "
        "AND conrelid = 'public.users'::regclass"
    ).fetchone()
    return None if row is None else row[0]


def test_a_users_own_update_through_postgrest_cannot_set_a_username_the_api_refuses(project):
    conn = project
    conn.execute(SQL.read_text())
    conn.execute(USERNAME_CHECK_SQL.read_text())
    conn.execute(USERNAME_CHECK_SQL.read_text())  # safe to run twice
    assert _username_check_validated(conn) is True

    alice = str(uuid4())
    conn.execute("INSERT INTO auth.users VALUES (%s, 'a@x.io')", (alice,))
    as_role(conn, "service_role")
    conn.execute("INSERT INTO public.users (id, email) VALUES (%s, 'a@x.io')", (alice,))

    # PostgREST runs a signed-in user's PATCH as `authenticated`, their id in the JWT claims.
    as_role(conn, "authenticated", alice)
    for bad in ("Alice", "al", "x" * 33, "al ice", "al\u00efce", "alice\n"):
        with pytest.raises(psycopg.errors.CheckViolation) as refused:
            conn.execute("UPDATE public.users SET username = %s WHERE id = %s", (bad, alice))
        assert refused.value.diag.constraint_name == "users_username_check"
    conn.execute("UPDATE public.users SET username = 'alice_01' WHERE id = %s", (alice,))
    as_role(conn, "service_role")
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("UPDATE public.users SET username = 'Bad Name' WHERE id = %s", (alice,))


def test_the_username_check_is_added_not_valid_over_rows_that_break_it(project):
    conn = project
    conn.execute(SQL.read_text())
    legacy, other = str(uuid4()), str(uuid4())
    conn.execute("INSERT INTO auth.users VALUES (%s, 'l@x.io'), (%s, 'o@x.io')", (legacy, other))
    conn.execute(
        "INSERT INTO public.users (id, email, username) VALUES (%s, 'l@x.io', 'Legacy Name'), "
        "(%s, 'o@x.io', 'other')",
        (legacy, other),
    )
    conn.execute(USERNAME_CHECK_SQL.read_text())
    assert _username_check_validated(conn) is False
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("UPDATE public.users SET username = 'New Bad' WHERE id = %s", (other,))
    # Fixed rows: running the file again validates it.
    conn.execute("UPDATE public.users SET username = 'legacy_name' WHERE id = %s", (legacy,))
    conn.execute(USERNAME_CHECK_SQL.read_text())
    assert _username_check_validated(conn) is True
