"""The API's username rule is also a CHECK on public.users (migration 0004), so no writer that
goes around the API stores another; added safely on a table that already breaks it."""

from __future__ import annotations

from uuid import uuid4

import psycopg
import pytest

from tests.conftest import migrate

CHECK = "users_username_check"
BAD = ["al", "x" * 33, "Alice", "al ice", "alice\n", "al-ice", "al\u00efce", "\uff41lice", ""]


def _add_user(conn: psycopg.Connection, username: str | None) -> str:
    user_id = str(uuid4())
    conn.execute(
        "INSERT INTO auth.users (id, email, signup_state) VALUES (%s, %s, 'complete')",
        (user_id, f"{user_id}@example.com"),
    )
    conn.execute(
        "INSERT INTO public.users (id, email, username) VALUES (%s, %s, %s)",
        (user_id, f"{user_id}@example.com", username),
    )
    return user_id


@pytest.mark.parametrize("username", BAD, ids=repr)
def test_the_database_refuses_a_username_the_api_refuses(auth, database_url, username):
    user_id = auth.signup(username="alice_01")["data"]["user"]["id"]
    with psycopg.connect(database_url, autocommit=True) as service:
        with pytest.raises(psycopg.errors.CheckViolation) as update:
            service.execute(
                "UPDATE public.users SET username = %s WHERE id = %s", (username, user_id)
            )
        assert update.value.diag.constraint_name == CHECK
        with pytest.raises(psycopg.errors.CheckViolation):
            _add_user(service, username)


def test_the_database_accepts_what_the_api_accepts(auth, database_url, db):
    user_id = auth.signup()["data"]["user"]["id"]
    with psycopg.connect(database_url, autocommit=True) as service:
        for username in ("abc", "x" * 32, "alice_01", "___", None):
            service.execute(
                "UPDATE public.users SET username = %s WHERE id = %s", (username, user_id)
            )
    assert db.execute("SELECT username FROM public.users").fetchone()["username"] is None


def test_on_a_table_that_follows_the_rule_the_check_is_validated(db):
    row = db.execute(
        "SELECT convalidated FROM pg_constraint WHERE conname = %s "
        "AND conrelid = 'public.users'::regclass",
        (CHECK,),
    ).fetchone()
    assert row == {"convalidated": True}


@pytest.fixture
def before_0004(pg):
    """A database migrated up to 0003, as it was before the CHECK existed."""
    url = pg.create_database("authsvc_test_0004")
    migrate(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"ALTER TABLE public.users DROP CONSTRAINT {CHECK}")
        conn.execute(
            "DELETE FROM authsvc._yoyo_migration WHERE migration_id = '0004_username_check'"
        )
    yield url
    pg.drop_database(url)


def _validated(conn: psycopg.Connection) -> bool | None:
    row = conn.execute(
        "SELECT convalidated FROM pg_constraint WHERE conname = %s "
        "AND conrelid = 'public.users'::regclass",
        (CHECK,),
    ).fetchone()
    return None if row is None else row[0]


def test_rows_breaking_the_rule_keep_it_not_valid_but_every_new_write_is_checked(before_0004):
    with psycopg.connect(before_0004, autocommit=True) as conn:
        legacy = _add_user(conn, "Legacy Name")
        fine = _add_user(conn, "fine_name")
        migrate(before_0004)
        assert _validated(conn) is False  # added, but not validated: a row breaks it
        assert conn.execute(
            "SELECT username FROM public.users WHERE id = %s", (legacy,)
        ).fetchone() == ("Legacy Name",)
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("UPDATE public.users SET username = 'Another Bad' WHERE id = %s", (fine,))
        with pytest.raises(psycopg.errors.CheckViolation):
            _add_user(conn, "New Bad")
        # Once the old rows are fixed, the operator validates it.
        conn.execute("UPDATE public.users SET username = 'legacy_name' WHERE id = %s", (legacy,))
        conn.execute(f"ALTER TABLE public.users VALIDATE CONSTRAINT {CHECK}")
        assert _validated(conn) is True


def test_without_such_rows_the_migration_validates_it(before_0004):
    with psycopg.connect(before_0004, autocommit=True) as conn:
        _add_user(conn, "fine_name")
        _add_user(conn, None)
        migrate(before_0004)
        assert _validated(conn) is True
