"""Find a user's rows, by email, in both tables: for any test, on Postgres or on Supabase.

A signup must leave both rows (the profile in public.users, the identity in auth.users, with
one id) or neither. These helpers look at the tables themselves, never through the service:

    rows = find_user("ada@example.com", source)   # None when neither table holds the email
    rows.tables                                   # ("public.users", "auth.users")
    assert_user_complete("ada@example.com", source)
    assert_user_absent("ada@example.com", source)

The lookup goes to public.users first; the identity is then the auth.users row with the
profile's id. Without a profile it falls back to auth.users by email. Each lookup is
"maybe single": no row is None, two rows raise MultipleRowsFound. Emails compare
case-insensitively, as the service compares them.

`source` is a Postgres URL (or a PostgresRows for a split deployment), a supabase-py Client
(or a SupabaseRows), or None to read the service's own environment (DATABASE_URL,
AUTH_DATABASE_URL; or AUTHSVC_BACKEND=supabase with SUPABASE_URL and
SUPABASE_SERVICE_ROLE_KEY).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

PROFILES = "public.users"
IDENTITIES = "auth.users"


class MultipleRowsFound(LookupError):
    """A lookup that must find at most one row found several."""

    def __init__(self, table: str, key: str, count: int | None = None) -> None:
        many = f"{count} rows" if count else "more than one row"
        super().__init__(f"{table} holds {many} for {key}; expected at most one")
        self.table = table
        self.key = key
        self.count = count


class RowSource(Protocol):
    """Where the two tables are read from."""

    def profile_by_email(self, email: str) -> dict[str, Any] | None: ...
    def profile_by_id(self, user_id: str) -> dict[str, Any] | None: ...
    def identity_by_id(self, user_id: str) -> dict[str, Any] | None: ...
    def identity_by_email(self, email: str) -> dict[str, Any] | None: ...


@dataclass(frozen=True)
class UserRows:
    """What the tables hold for one email."""

    email: str
    profile: dict[str, Any] | None
    identity: dict[str, Any] | None

    @property
    def tables(self) -> tuple[str, ...]:
        """The tables that hold the user, public.users first."""
        held = ((PROFILES, self.profile), (IDENTITIES, self.identity))
        return tuple(table for table, row in held if row is not None)

    @property
    def table(self) -> str:
        """Where `row` came from: public.users, else auth.users."""
        return self.tables[0]

    @property
    def row(self) -> dict[str, Any]:
        """The profile when there is one, else the identity."""
        return self.profile if self.profile is not None else self.identity  # type: ignore

    @property
    def id(self) -> str:
        return str(self.row["id"])

    def problems(self) -> list[str]:
        """Why this is not one complete user (empty when it is)."""
        profile, identity = self.profile, self.identity
        if profile is None and identity is None:
            return [f"{PROFILES} has no row and {IDENTITIES} has no row"]
        if profile is None:
            return [f"{PROFILES} lacks the row ({IDENTITIES} holds id {identity['id']})"]
        if identity is None:
            return [f"{IDENTITIES} lacks the row for id {profile['id']} ({PROFILES} holds it)"]
        found = []
        if str(profile["id"]) != str(identity["id"]):
            found.append(
                f"{PROFILES} holds id {profile['id']} but {IDENTITIES} holds id {identity['id']}"
            )
        if str(profile.get("email", "")).lower() != str(identity.get("email", "")).lower():
            found.append(
                f"{PROFILES} holds email {profile.get('email')!r} but {IDENTITIES} holds "
                f"{identity.get('email')!r}"
            )
        state = identity.get("signup_state")
        if state is not None and state != "complete":
            found.append(f"{IDENTITIES} holds the row but its signup_state is {state!r}")
        return found

    @property
    def complete(self) -> bool:
        return not self.problems()


# -- Postgres -----------------------------------------------------------------------------------


class PostgresRows:
    """Both tables through psycopg; `auth_url` when identities live in another database."""

    def __init__(self, url: str, auth_url: str | None = None) -> None:
        self.url = url
        self.auth_url = auth_url or url

    def _maybe_single(self, url: str, table: str, where: str, key: str, value: str):
        import psycopg
        from psycopg.rows import dict_row

        # The service's own reading of timestamps: a ban of 'infinity' set by SQL is a date.
        from authsvc.stores.pg.timestamps import ADAPTERS

        query = f"SELECT * FROM {table} WHERE {where} LIMIT 2"  # noqa: S608 - fixed names
        with psycopg.connect(url, row_factory=dict_row, autocommit=True, context=ADAPTERS) as conn:
            rows = conn.execute(query, (value,)).fetchall()
        if len(rows) > 1:
            raise MultipleRowsFound(table, key)
        return _plain(rows[0]) if rows else None

    def profile_by_email(self, email: str) -> dict[str, Any] | None:
        return self._maybe_single(
            self.url, PROFILES, "lower(email) = lower(%s)", f"email {email!r}", email
        )

    def profile_by_id(self, user_id: str) -> dict[str, Any] | None:
        return self._maybe_single(self.url, PROFILES, "id = %s", f"id {user_id}", user_id)

    def identity_by_id(self, user_id: str) -> dict[str, Any] | None:
        return self._maybe_single(self.auth_url, IDENTITIES, "id = %s", f"id {user_id}", user_id)

    def identity_by_email(self, email: str) -> dict[str, Any] | None:
        return self._maybe_single(
            self.auth_url, IDENTITIES, "lower(email) = lower(%s)", f"email {email!r}", email
        )


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """Ids as canonical strings, like the API and PostgREST give them."""
    return {k: str(v) if isinstance(v, UUID) else v for k, v in row.items()}


# -- Supabase -----------------------------------------------------------------------------------


def _like_literal(value: str) -> str:
    """`value` as an ILIKE pattern: `\\`, `%` and `_` escaped. A `*`, which PostgREST reads as
    `%`, cannot be escaped, so the caller checks the row it gets back."""
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class SupabaseRows:
    """public.users through PostgREST and auth.users through GoTrue's admin API (supabase-py,
    with the service role key: server-side and test-side only)."""

    def __init__(self, client: Any, per_page: int = 200) -> None:
        self.client = client
        self.per_page = per_page

    @classmethod
    def connect(cls, url: str, service_role_key: str, per_page: int = 200) -> SupabaseRows:
        from supabase import create_client

        return cls(create_client(url, service_role_key), per_page)

    def _maybe_single(self, query: Any, key: str) -> dict[str, Any] | None:
        from postgrest.exceptions import APIError

        try:
            # postgrest-py: None for no row; APIError (code "406") for more than one.
            response = query.maybe_single().execute()
        except APIError as exc:
            if str(exc.code) in ("406", "PGRST116"):
                raise MultipleRowsFound(PROFILES, key) from exc
            raise
        return None if response is None else response.data

    def profile_by_email(self, email: str) -> dict[str, Any] | None:
        query = self.client.table("users").select("*").ilike("email", _like_literal(email))
        row = self._maybe_single(query, f"email {email!r}")
        if row is not None and str(row.get("email", "")).lower() != email.lower():
            return None  # matched through a '*' in the address, which PostgREST reads as '%'
        return row

    def profile_by_id(self, user_id: str) -> dict[str, Any] | None:
        query = self.client.table("users").select("*").eq("id", str(user_id))
        return self._maybe_single(query, f"id {user_id}")

    def _identities(self):
        """Every auth user, page by page (GoTrue's admin list has no email filter)."""
        page = 1
        while True:
            users = self.client.auth.admin.list_users(page=page, per_page=self.per_page)
            yield from users
            if len(users) < self.per_page:
                return
            page += 1

    def _single_identity(self, matches, key: str) -> dict[str, Any] | None:
        found = [u.model_dump(mode="json") for u in matches]
        if len(found) > 1:
            raise MultipleRowsFound(IDENTITIES, key, len(found))
        return found[0] if found else None

    def identity_by_id(self, user_id: str) -> dict[str, Any] | None:
        wanted = str(user_id).lower()
        return self._single_identity(
            (u for u in self._identities() if str(u.id).lower() == wanted), f"id {user_id}"
        )

    def identity_by_email(self, email: str) -> dict[str, Any] | None:
        wanted = email.lower()
        return self._single_identity(
            (u for u in self._identities() if (u.email or "").lower() == wanted),
            f"email {email!r}",
        )


# -- choosing a source --------------------------------------------------------------------------


def source_from_env(env: dict[str, str] | None = None) -> RowSource:
    """The tables the service itself is configured with."""
    env = dict(os.environ if env is None else env)
    if (env.get("AUTHSVC_BACKEND") or "postgres").lower() == "supabase":
        url, key = env.get("SUPABASE_URL"), env.get("SUPABASE_SERVICE_ROLE_KEY")
        if not url or not key:
            raise RuntimeError(
                "AUTHSVC_BACKEND=supabase needs SUPABASE_URL and "
                "SUPABASE_SERVICE_ROLE_KEY to find users"
            )
        return SupabaseRows.connect(url, key)
    url = env.get("DATABASE_URL") or env.get("POSTGRES_URL")
    if not url:
        raise RuntimeError("set DATABASE_URL (or pass a source) to find users")
    return PostgresRows(url, env.get("AUTH_DATABASE_URL") or None)


def as_source(source: Any = None) -> RowSource:
    """A RowSource from a Postgres URL, a supabase-py Client, a RowSource, or the environment."""
    if source is None:
        return source_from_env()
    if isinstance(source, str):
        return PostgresRows(source)
    if hasattr(source, "profile_by_email"):
        return source
    if hasattr(source, "table") and hasattr(source, "auth"):
        return SupabaseRows(source)
    raise TypeError(f"cannot read users from {type(source).__name__}")


# -- the helpers --------------------------------------------------------------------------------


def find_user(email: str, source: Any = None) -> UserRows | None:
    """Both rows of `email`'s user, or None when neither table holds it.

    public.users first, then the identity with the profile's id; without a profile, the
    identity with this email (and a profile with that identity's id). MultipleRowsFound when
    a table holds two rows for it.
    """
    rows = as_source(source)
    profile = rows.profile_by_email(email)
    if profile is not None:
        identity = rows.identity_by_id(str(profile["id"]))
    else:
        identity = rows.identity_by_email(email)
        if identity is None:
            return None
        # A profile may hold the identity's id under another email (a trigger rewrote it).
        profile = rows.profile_by_id(str(identity["id"]))
    return UserRows(email, profile, identity)


def assert_user_complete(email: str, source: Any = None) -> UserRows:
    """Fail, naming the table that lacks the row, unless `email` is one complete user."""
    found = find_user(email, source) or UserRows(email, None, None)
    problems = found.problems()
    if problems:
        raise AssertionError(f"user {email!r} is not complete: " + "; ".join(problems))
    return found


def assert_user_absent(email: str, source: Any = None) -> None:
    """Fail, naming the table that still holds a row, unless neither holds `email`."""
    found = find_user(email, source)
    if found is not None:
        raise AssertionError(
            f"user {email!r} should not exist, but "
            + " and ".join(
                f"{table} holds id {row['id']}"
                for table, row in ((PROFILES, found.profile), (IDENTITIES, found.identity))
                if row is not None
            )
        )
