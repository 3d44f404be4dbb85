"""`compensated: true` is a promise, and a whole account is a 201: the replies of real
statements are lost on the wire (tests/lossy_proxy.py) and the service must read back before it
answers, in one database and across two."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row

from authsvc import create_app
from authsvc.errors import SignupFailed
from tests import faults, pgbouncer
from tests.conftest import PASSWORD, AuthActions, app_overrides, identity_row, profile_row
from tests.lossy_proxy import LossyProxy

COMMIT = "COMMIT"
COMPLETE = "signup_state = 'complete'"
IDENTITY_INSERT = "INSERT INTO auth.users"


def _proxied(env: dict[str, str], var: str) -> tuple[dict[str, str], LossyProxy]:
    """`env` (the service's database settings) with `var`'s database behind a proxy, right in
    front of the service: before PgBouncer when the suite runs behind it (whose direct URL then
    stays as it was)."""
    env = pgbouncer.route(env)
    params = conninfo_to_dict(env[var])
    proxy = LossyProxy(params.get("host") or "127.0.0.1", int(params.get("port") or 5432))
    return {**env, var: proxy.url(env[var])}, proxy


@pytest.fixture
def one(database_url: str, tmp_path: Any) -> Iterator[tuple[AuthActions, LossyProxy]]:
    """The service on one database, through the proxy."""
    env, proxy = _proxied({"DATABASE_URL": database_url}, "DATABASE_URL")
    app = create_app(
        app_overrides(env.pop("DATABASE_URL"), tmp_path, AUTHSVC_DB_POOL_TIMEOUT="1", **env)
    )
    yield AuthActions(app.test_client()), proxy
    app.extensions["authsvc"].stores.close()
    proxy.stop()


@pytest.fixture
def split(split_urls: tuple[str, str], tmp_path: Any) -> Iterator[tuple[AuthActions, LossyProxy]]:
    """The service on two databases; the identity database behind the proxy."""
    app_url, auth_url = split_urls
    env, proxy = _proxied(
        {"DATABASE_URL": app_url, "AUTH_DATABASE_URL": auth_url}, "AUTH_DATABASE_URL"
    )
    app = create_app(
        app_overrides(env.pop("DATABASE_URL"), tmp_path, AUTHSVC_DB_POOL_TIMEOUT="1", **env)
    )
    yield AuthActions(app.test_client()), proxy
    app.extensions["authsvc"].stores.close()
    proxy.stop()


def _split_rows(split_urls: tuple[str, str], email: str) -> tuple[dict | None, dict | None]:
    """(identity, profile) of `email` across the two databases."""
    app_url, auth_url = split_urls
    with psycopg.connect(auth_url, autocommit=True, row_factory=dict_row) as conn:
        identity = identity_row(conn, email)
    with psycopg.connect(app_url, autocommit=True, row_factory=dict_row) as conn:
        profile = conn.execute(
            "SELECT * FROM public.users WHERE lower(email) = lower(%s)", (email,)
        ).fetchone()
    return identity, profile


def test_a_lost_commit_reply_of_a_whole_account_is_answered_201(one, db):
    auth, proxy = one
    proxy.lose_reply_of(COMMIT)
    body = auth.signup("lost-commit@example.com", expect=201)
    assert proxy.lost == [COMMIT.encode()], "the COMMIT's reply was not lost: nothing was tested"
    user = body["data"]["user"]
    assert identity_row(db, "lost-commit@example.com")["signup_state"] == "complete"
    assert profile_row(db, user["id"]) is not None
    assert body["data"]["session"] is not None
    assert auth.login("lost-commit@example.com")["data"]["user"]["id"] == user["id"]


def test_a_lost_commit_that_cannot_be_read_back_is_not_called_compensated(one, db, owner_url):
    auth, proxy = one
    proxy.lose_reply_of(COMMIT)
    with ExitStack() as stack:
        # Right after the COMMIT lands, the service may no longer read auth.users: nobody can
        # look at what became of the signup.
        proxy.on_loss = lambda: stack.enter_context(
            faults.revoked(owner_url, "SELECT", "auth.users")
        )
        body = auth.signup("unknown@example.com", expect=500)
    assert proxy.lost == [COMMIT.encode()]
    error = body["error"]
    assert error["code"] == SignupFailed.code
    assert error["details"]["step"] == "complete"
    assert error["details"]["reason"] == "connection_lost"
    # The COMMIT landed: rows remain, so "compensated" must say false.
    assert error["details"]["compensated"] is False
    assert identity_row(db, "unknown@example.com")["signup_state"] == "complete"
    # The account is whole: the client that reads "log in first" can.
    assert auth.login("unknown@example.com")["data"]["user"]["email"] == "unknown@example.com"


def test_split_a_lost_complete_reply_of_a_whole_account_is_answered_201(split, split_urls):
    auth, proxy = split
    proxy.lose_reply_of(COMPLETE)
    body = auth.signup("split-lost@example.com", expect=201)
    assert proxy.lost == [COMPLETE.encode()]
    identity, profile = _split_rows(split_urls, "split-lost@example.com")
    assert identity["signup_state"] == "complete" and profile["id"] == identity["id"]
    assert body["data"]["user"]["id"] == str(identity["id"])
    assert auth.login("split-lost@example.com")["data"]["user"]["id"] == str(identity["id"])


def test_split_a_lost_identity_insert_reply_is_compensated_and_says_so(split, split_urls):
    auth, proxy = split
    proxy.lose_reply_of(IDENTITY_INSERT)
    body = auth.signup("split-insert@example.com", expect=500)
    assert proxy.lost == [IDENTITY_INSERT.encode()]
    details = body["error"]["details"]
    assert (details["step"], details["reason"]) == ("identity_create", "connection_lost")
    # The insert landed; compensation removed it and read back: nothing remains, and it says so.
    assert details["compensated"] is True
    assert _split_rows(split_urls, "split-insert@example.com") == (None, None)
    auth.signup("split-insert@example.com", expect=201)  # and a retry is a fresh signup


def test_a_whole_account_whose_session_cannot_start_is_201_with_session_null(auth, db, owner_url):
    with faults.trigger(owner_url, "authsvc.sessions", "RAISE EXCEPTION 'no sessions today';"):
        body = auth.signup("nosession@example.com", expect=201)
    assert body["data"]["session"] is None
    user = body["data"]["user"]
    assert user["email"] == "nosession@example.com"
    assert identity_row(db, "nosession@example.com")["signup_state"] == "complete"
    assert profile_row(db, user["id"]) is not None
    # The client logs in instead of signing up again.
    assert auth.login("nosession@example.com", PASSWORD)["data"]["session"]["access_token"]
