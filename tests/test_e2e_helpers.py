"""e2e.helpers: finding a user's rows on real Postgres, and on Supabase through respx doubles of
PostgREST and GoTrue that answer with the shapes those servers answer with."""

from __future__ import annotations

import re
import uuid
from typing import Any
from urllib.parse import unquote

import httpx
import psycopg
import pytest
import respx

from e2e.helpers import (
    IDENTITIES,
    PROFILES,
    MultipleRowsFound,
    PostgresRows,
    SupabaseRows,
    as_source,
    assert_user_absent,
    assert_user_complete,
    find_user,
    source_from_env,
)


def add_identity(url: str, email: str, state: str = "complete", user_id: Any = None) -> str:
    user_id = str(user_id or uuid.uuid4())
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO auth.users (id, email, password_hash, signup_state) "
            "VALUES (%s, %s, 'x', %s)",
            (user_id, email, state),
        )
    return user_id


def add_profile(url: str, user_id: str, email: str, username: str | None = None) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO public.users (id, email, username) VALUES (%s, %s, %s)",
            (user_id, email, username),
        )


# -- Postgres -----------------------------------------------------------------------------------


def test_no_row_in_either_table_is_none_not_an_error(database_url):
    assert find_user("nobody@example.com", database_url) is None
    assert_user_absent("nobody@example.com", database_url)


def test_a_complete_user_is_found_in_both_tables_whatever_the_case_of_the_email(auth, database_url):
    user = auth.signup("Ada@Example.com", username="ada")["data"]["user"]
    rows = find_user("ADA@example.COM", database_url)
    assert rows.tables == (PROFILES, IDENTITIES)
    assert rows.table == PROFILES and rows.row is rows.profile
    assert rows.id == user["id"] == rows.identity["id"]
    assert rows.profile["username"] == "ada"
    assert rows.complete
    again = assert_user_complete("ada@example.com", database_url)
    assert (again.profile, again.identity) == (rows.profile, rows.identity)


def test_an_identity_without_its_profile_is_found_in_auth_users(database_url):
    user_id = add_identity(database_url, "ida@example.com")
    rows = find_user("ida@example.com", database_url)
    assert rows.tables == (IDENTITIES,) and rows.table == IDENTITIES
    assert rows.profile is None and rows.id == user_id
    with pytest.raises(
        AssertionError,
        match=rf"public\.users lacks the row \(auth\.users holds id "
        rf"{user_id}\)",
    ):
        assert_user_complete("ida@example.com", database_url)


def test_a_user_banned_for_ever_by_sql_is_found_with_its_ban(auth, database_url):
    auth.signup("ever@example.com")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("UPDATE auth.users SET banned_until = 'infinity'")
    rows = assert_user_complete("ever@example.com", database_url)
    assert rows.identity["banned_until"].year == 9999


def test_a_profile_without_its_identity_names_auth_users(split_urls):
    app_url, auth_url = split_urls
    user_id = str(uuid.uuid4())
    add_profile(app_url, user_id, "pat@example.com")
    rows = find_user("pat@example.com", PostgresRows(app_url, auth_url))
    assert rows.tables == (PROFILES,) and rows.identity is None
    with pytest.raises(AssertionError, match=rf"auth\.users lacks the row for id {user_id}"):
        assert_user_complete("pat@example.com", PostgresRows(app_url, auth_url))
    with pytest.raises(AssertionError, match=rf"public\.users holds id {user_id}"):
        assert_user_absent("pat@example.com", PostgresRows(app_url, auth_url))


def test_a_pending_identity_is_not_a_complete_user(database_url):
    user_id = add_identity(database_url, "pen@example.com", state="pending")
    add_profile(database_url, user_id, "pen@example.com")
    with pytest.raises(AssertionError, match="signup_state is 'pending'"):
        assert_user_complete("pen@example.com", database_url)


def test_a_profile_whose_email_was_rewritten_is_found_by_the_identitys_id(database_url):
    user_id = add_identity(database_url, "eve@example.com")
    add_profile(database_url, user_id, "someone-else@example.com")
    rows = find_user("eve@example.com", database_url)
    assert rows.tables == (PROFILES, IDENTITIES) and rows.profile["id"] == user_id
    with pytest.raises(AssertionError, match="public.users holds email 'someone-else@example.com'"):
        assert_user_complete("eve@example.com", database_url)


def test_two_profiles_with_one_email_raise_naming_the_table(database_url):
    for n in (1, 2):
        add_profile(
            database_url, add_identity(database_url, f"x{n}@example.com"), "dup@example.com"
        )
    with pytest.raises(MultipleRowsFound, match=r"public\.users holds more than one row") as err:
        find_user("DUP@example.com", database_url)
    assert err.value.table == PROFILES


def test_the_source_can_come_from_the_services_environment(auth, database_url):
    auth.signup("env@example.com")
    source = source_from_env({"DATABASE_URL": database_url})
    assert isinstance(source, PostgresRows)
    assert assert_user_complete("env@example.com", source).tables == (PROFILES, IDENTITIES)
    with pytest.raises(RuntimeError, match="DATABASE_URL"):
        source_from_env({})


# -- Supabase, through doubles of its HTTP APIs ---------------------------------------------------

SUPABASE_URL = "https://abcdefghijklmnop.supabase.co"
SERVICE_KEY = "eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoic2VydmljZV9yb2xlIn0.c2VydmljZS1yb2xlLXNpZ24"


def like_to_regex(pattern: str) -> re.Pattern:
    """PostgreSQL ILIKE, with PostgREST's '*' for '%' and backslash escapes."""
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if ch in "%*" else "." if ch == "_" else re.escape(ch))
        i += 1
    return re.compile("".join(out), re.IGNORECASE | re.DOTALL)


class FakeSupabase:
    """public.users behind PostgREST and auth users behind GoTrue's admin API."""

    def __init__(self, mock: respx.MockRouter) -> None:
        self.profiles: list[dict[str, Any]] = []
        self.users: list[dict[str, Any]] = []
        self.requests: list[httpx.Request] = []
        mock.get(f"{SUPABASE_URL}/rest/v1/users").mock(side_effect=self.postgrest)
        mock.get(f"{SUPABASE_URL}/auth/v1/admin/users").mock(side_effect=self.gotrue_list)

    def add_user(
        self,
        email: str,
        profile: bool = True,
        identity: bool = True,
        profile_email: str | None = None,
    ) -> str:
        user_id = str(uuid.uuid4())
        if identity:
            self.users.append(
                {
                    "id": user_id,
                    "aud": "authenticated",
                    "role": "authenticated",
                    "email": email.lower(),
                    "email_confirmed_at": "2025-01-02T03:04:05.123456Z",
                    "phone": "",
                    "confirmed_at": "2025-01-02T03:04:05.123456Z",
                    "last_sign_in_at": None,
                    "app_metadata": {"provider": "email", "providers": ["email"]},
                    "user_metadata": {},
                    "identities": [],
                    "created_at": "2025-01-02T03:04:05.123456Z",
                    "updated_at": "2025-01-02T03:04:05.123456Z",
                    "is_anonymous": False,
                }
            )
        if profile:
            self.profiles.append(
                {
                    "id": user_id,
                    "email": profile_email or email,
                    "username": None,
                    "display_name": None,
                    "created_at": "2025-01-02T03:04:05.123456+00:00",
                    "updated_at": "2025-01-02T03:04:05.123456+00:00",
                }
            )
        return user_id

    @staticmethod
    def _authorised(request: httpx.Request) -> bool:
        return (
            request.headers.get("apikey") == SERVICE_KEY
            and request.headers.get("authorization") == f"Bearer {SERVICE_KEY}"
        )

    def postgrest(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if not self._authorised(request):
            return httpx.Response(
                401,
                json={
                    "code": "PGRST301",
                    "details": None,
                    "hint": None,
                    "message": "JWSError JWSInvalidSignature",
                },
            )
        assert request.headers.get("accept-profile") == "public"
        rows = self.profiles
        for column, expression in request.url.params.multi_items():
            if column == "select":
                assert expression == "*"
                continue
            op, _, value = expression.partition(".")
            if op == "eq":
                rows = [r for r in rows if str(r.get(column)) == value]
            elif op == "ilike":
                regex = like_to_regex(value)
                rows = [r for r in rows if regex.fullmatch(str(r.get(column)))]
            else:
                return httpx.Response(
                    400,
                    json={
                        "code": "PGRST100",
                        "details": f'unexpected "{op}"',
                        "hint": None,
                        "message": f'"failed to parse filter ({expression})" (line 1, column 1)',
                    },
                )
        content_range = f"0-{len(rows) - 1}/*" if rows else "*/*"
        return httpx.Response(
            200,
            json=rows,
            headers={
                "Content-Range": content_range,
                "Content-Type": "application/json; charset=utf-8",
            },
        )

    def gotrue_list(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if not self._authorised(request):
            return httpx.Response(
                403, json={"code": 403, "error_code": "not_admin", "msg": "User not allowed"}
            )
        page = int(request.url.params.get("page", 1))
        per_page = int(request.url.params.get("per_page", 50))
        chunk = self.users[(page - 1) * per_page : page * per_page]
        last = max(1, -(-len(self.users) // per_page))
        links = [f'</admin/users?page={last}&per_page={per_page}>; rel="last"']
        if page < last:
            links.insert(0, f'</admin/users?page={page + 1}&per_page={per_page}>; rel="next"')
        return httpx.Response(
            200,
            json={"users": chunk, "aud": "authenticated"},
            headers={"X-Total-Count": str(len(self.users)), "Link": ", ".join(links)},
        )

    def pages_asked(self) -> list[int]:
        return [int(r.url.params["page"]) for r in self.requests if "admin/users" in r.url.path]


@pytest.fixture
def supabase():
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as mock:
        yield FakeSupabase(mock)


@pytest.fixture
def rows() -> SupabaseRows:
    return SupabaseRows.connect(SUPABASE_URL, SERVICE_KEY, per_page=2)


def test_supabase_no_user_is_none_after_reading_every_page(supabase, rows):
    for n in range(3):
        supabase.add_user(f"other{n}@example.com")
    assert find_user("nobody@example.com", rows) is None
    assert supabase.pages_asked() == [1, 2]  # 2 + 1 users: the short page is the last


def test_supabase_a_complete_user_is_found_in_both_tables(supabase, rows):
    for n in range(4):
        supabase.add_user(f"other{n}@example.com")
    user_id = supabase.add_user("Ada@Example.com")
    found = assert_user_complete("ada@example.com", rows)
    assert found.tables == (PROFILES, IDENTITIES)
    assert found.id == user_id == found.identity["id"]
    assert found.identity["aud"] == "authenticated"
    assert supabase.pages_asked() == [1, 2, 3]  # the identity sits on the third page
    rest = [r for r in supabase.requests if r.url.path == "/rest/v1/users"][0]
    assert unquote(str(rest.url.params)) == "select=*&email=ilike.ada@example.com"


def test_supabase_an_identity_without_its_profile_names_public_users(supabase, rows):
    user_id = supabase.add_user("ida@example.com", profile=False)
    found = find_user("ida@example.com", rows)
    assert found.tables == (IDENTITIES,) and found.id == user_id
    with pytest.raises(AssertionError, match=r"public\.users lacks the row"):
        assert_user_complete("ida@example.com", rows)


def test_supabase_a_profile_without_its_identity_names_auth_users(supabase, rows):
    user_id = supabase.add_user("pat@example.com", identity=False)
    with pytest.raises(AssertionError, match=rf"auth\.users lacks the row for id {user_id}"):
        assert_user_complete("pat@example.com", rows)


def test_supabase_two_profiles_with_one_email_raise(supabase, rows):
    supabase.add_user("dup@example.com")
    supabase.add_user("DUP@example.com", identity=False)
    with pytest.raises(MultipleRowsFound) as err:
        find_user("dup@example.com", rows)
    assert err.value.table == PROFILES


def test_supabase_an_underscore_in_the_email_matches_only_itself(supabase, rows):
    supabase.add_user("axb@example.com")
    assert find_user("a_b@example.com", rows) is None
    supabase.add_user("a_b@example.com")
    assert assert_user_complete("a_b@example.com", rows).profile["email"] == "a_b@example.com"


def test_supabase_a_refused_key_is_an_error_not_an_absent_user(supabase):
    from postgrest.exceptions import APIError
    from supabase_auth.errors import AuthApiError

    wrong = SupabaseRows.connect(SUPABASE_URL, "not-the-service-key")
    with pytest.raises(APIError):
        find_user("ada@example.com", wrong)
    with pytest.raises(AuthApiError):
        wrong.identity_by_email("ada@example.com")


def test_supabase_sources_from_a_client_and_from_the_environment(supabase):
    from supabase import create_client

    supabase.add_user("env@example.com")
    client = create_client(SUPABASE_URL, SERVICE_KEY)
    assert isinstance(as_source(client), SupabaseRows)
    assert assert_user_complete("env@example.com", client).tables == (PROFILES, IDENTITIES)
    source = source_from_env(
        {
            "AUTHSVC_BACKEND": "supabase",
            "SUPABASE_URL": SUPABASE_URL,
            "SUPABASE_SERVICE_ROLE_KEY": SERVICE_KEY,
        }
    )
    assert isinstance(source, SupabaseRows)
    with pytest.raises(RuntimeError, match="SUPABASE_SERVICE_ROLE_KEY"):
        source_from_env({"AUTHSVC_BACKEND": "supabase"})
