"""Bans hold on every call, a replay creates nothing, and storage stays bounded."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from authsvc import create_app
from authsvc.config import load_settings
from authsvc.errors import (
    IdempotencyKeyReused,
    InternalError,
    InvalidCredentials,
    RateLimited,
    TokenRevoked,
    UserBanned,
)
from authsvc.services import maintenance
from authsvc.stores import make_stores
from authsvc.stores.pg.database import Database
from tests import faults, pgbouncer
from tests.conftest import PASSWORD, TEST_SECRET, AuthActions, app_overrides, count


def _ban(db: Any, email: str, interval: str = "1 hour") -> None:
    """A ban as an operator writes it: banned_until set by plain SQL."""
    db.execute(
        f"UPDATE auth.users SET banned_until = now() + interval '{interval}' "
        "WHERE lower(email) = lower(%s)",
        (email,),
    )


def _refresh(client, token: str):
    return client.post("/api/v1/auth/refresh", json={"refresh_token": token})


# -- bans -------------------------------------------------------------------------------------


def test_a_ban_set_in_sql_stops_every_authenticated_call_at_once(auth, db):
    session = auth.signup("banned@example.com")["data"]["session"]
    assert auth.me(session["access_token"]).status_code == 200
    _ban(db, "banned@example.com")
    me = auth.me(session["access_token"])
    assert me.status_code == 403 and me.get_json()["error"]["code"] == UserBanned.code
    assert me.get_json()["error"]["details"]["banned_until"].endswith("Z")
    patch = auth.client.patch(
        "/api/v1/auth/me",
        json={"display_name": "x"},
        headers={"Authorization": f"Bearer {session['access_token']}"},
    )
    assert patch.status_code == 403 and patch.get_json()["error"]["code"] == UserBanned.code


def test_a_banned_user_cannot_refresh_and_nothing_is_rotated(auth, db):
    session = auth.signup("banned@example.com")["data"]["session"]
    _ban(db, "banned@example.com")
    refused = _refresh(auth.client, session["refresh_token"])
    assert refused.status_code == 403 and refused.get_json()["error"]["code"] == UserBanned.code
    assert count(db, "authsvc.refresh_tokens") == 1  # no new token was written
    assert db.execute("SELECT used_at FROM authsvc.refresh_tokens").fetchone()["used_at"] is None
    # Lifted: the same refresh token works again; the ban never ended the session.
    db.execute("UPDATE auth.users SET banned_until = NULL")
    assert _refresh(auth.client, session["refresh_token"]).status_code == 200


def test_a_ban_that_has_run_out_lets_the_user_back(auth, db):
    session = auth.signup("paroled@example.com")["data"]["session"]
    _ban(db, "paroled@example.com", "-1 second")  # banned_until in the past
    assert auth.me(session["access_token"]).status_code == 200
    assert auth.login("paroled@example.com").get("success")


def test_an_idempotent_replay_mints_nothing_for_a_banned_user(auth, db):
    headers = {"Idempotency-Key": "ban-replay"}
    first = auth.signup("banned@example.com", headers=headers)
    _ban(db, "banned@example.com")
    sessions_before = count(db, "authsvc.sessions")
    again = auth.signup("banned@example.com", headers=headers)
    assert again == first  # the first answer itself, not a new session
    assert count(db, "authsvc.sessions") == sessions_before
    me = auth.me(again["data"]["session"]["access_token"])
    assert me.get_json()["error"]["code"] == UserBanned.code


# Past the year 9999, where Python's datetime ends: 'infinity' and a date five digits long.
BEYOND_9999 = ["'infinity'", "now() + interval '10000 years'"]
LAST_INSTANT = "9999-12-31T23:59:59.999999Z"


@pytest.mark.parametrize("until", BEYOND_9999)
def test_a_ban_past_the_year_9999_is_a_ban_on_every_call(auth, db, until):
    session = auth.signup("forever@example.com")["data"]["session"]
    db.execute(
        f"UPDATE auth.users SET banned_until = {until} WHERE email = %s", ("forever@example.com",)
    )
    for answer in (
        auth.me(session["access_token"]),
        _refresh(auth.client, session["refresh_token"]),
        auth.client.post(
            "/api/v1/auth/login", json={"email": "forever@example.com", "password": PASSWORD}
        ),
    ):
        assert answer.status_code == 403, answer.get_json()
        error = answer.get_json()["error"]
        assert error["code"] == UserBanned.code
        assert error["details"]["banned_until"] == LAST_INSTANT
    wrong = auth.login("forever@example.com", "not the password", expect=401)
    assert wrong["error"]["code"] == InvalidCredentials.code


@pytest.mark.parametrize("binary", [False, True])
def test_timestamps_beyond_what_python_holds_are_read_as_its_first_and_last_instants(
    database_url, binary
):
    db = Database(database_url, "database")
    with db.connect_direct() as conn, conn.cursor(binary=binary) as cursor:
        row = cursor.execute(
            "SELECT 'infinity'::timestamptz AS inf, '-infinity'::timestamptz AS neg, "
            "now() + interval '10000 years' AS far, '4713-01-01 BC'::timestamptz AS bc, "
            "'2001-02-03 04:05:06.789+00'::timestamptz AS plain"
        ).fetchone()
    assert row["inf"] == row["far"] == datetime.max.replace(tzinfo=UTC)
    assert row["neg"] == row["bc"] == datetime.min.replace(tzinfo=UTC)
    assert row["plain"] == datetime(2001, 2, 3, 4, 5, 6, 789000, tzinfo=UTC)
    db.open()
    try:
        assert db.read_one("SELECT 'infinity'::timestamptz AS t")["t"].year == 9999
    finally:
        db.close()


# -- idempotent replay --------------------------------------------------------------------------


def test_a_replay_returns_the_first_answer_and_creates_nothing(auth, client, db):
    headers = {"Idempotency-Key": "replay-1"}
    first = client.post(
        "/api/v1/auth/signup",
        headers=headers,
        json={"email": "once@example.com", "password": PASSWORD},
    )
    second = client.post(
        "/api/v1/auth/signup",
        headers=headers,
        json={"email": "once@example.com", "password": PASSWORD},
    )
    assert (first.status_code, second.status_code) == (201, 201)
    assert second.get_json() == first.get_json()  # the same tokens, byte for byte
    assert second.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert (count(db, "auth.users"), count(db, "authsvc.sessions")) == (1, 1)


def test_the_stored_answer_is_sealed_and_holds_no_token_in_clear(auth, db):
    body = auth.signup("sealed@example.com", headers={"Idempotency-Key": "sealed-1"})
    stored = bytes(db.execute("SELECT sealed FROM authsvc.idempotency_keys").fetchone()["sealed"])
    for secret in (
        body["data"]["session"]["access_token"],
        body["data"]["session"]["refresh_token"],
        "sealed@example.com",
    ):
        assert secret.encode() not in stored


def test_a_sealed_answer_moved_to_another_key_does_not_open(auth, db):
    auth.signup("moved@example.com", headers={"Idempotency-Key": "original"})
    db.execute(
        "INSERT INTO authsvc.idempotency_keys (key, fingerprint, status, sealed) "
        "SELECT 'copied', fingerprint, status, sealed FROM authsvc.idempotency_keys"
    )
    copied = auth.signup("moved@example.com", headers={"Idempotency-Key": "copied"}, expect=500)
    assert copied["error"]["code"] == InternalError.code


def test_a_client_error_is_replayed_as_it_was(auth):
    auth.signup("taken@example.com")
    headers = {"Idempotency-Key": "dup-1"}
    first = auth.signup("taken@example.com", headers=headers, expect=409)
    again = auth.signup("taken@example.com", headers=headers, expect=409)
    assert {k: v for k, v in again["error"].items() if k != "request_id"} == {
        k: v for k, v in first["error"].items() if k != "request_id"
    }


def test_the_same_key_with_another_body_is_refused(auth):
    auth.signup("a@example.com", headers={"Idempotency-Key": "k"})
    other = auth.signup("b@example.com", headers={"Idempotency-Key": "k"}, expect=422)
    assert other["error"]["code"] == IdempotencyKeyReused.code


def test_a_5xx_answer_is_not_kept_and_a_retry_runs_again(auth, db, owner_url):
    headers = {"Idempotency-Key": "fails-once"}
    with faults.profile_insert_raises(owner_url):
        auth.signup("retry@example.com", headers=headers, expect=500)
    assert count(db, "authsvc.idempotency_keys") == 0
    auth.signup("retry@example.com", headers=headers, expect=201)


def test_a_429_answer_is_not_kept(database_url, tmp_path, db):
    app = create_app(
        app_overrides(
            database_url, tmp_path, AUTHSVC_RATE_LIMITS="on", AUTHSVC_RATE_LIMIT_SIGNUP="1 per hour"
        )
    )
    auth = AuthActions(app.test_client())
    try:
        auth.signup("first@example.com", headers={"Idempotency-Key": "a"})
        limited = auth.signup("second@example.com", headers={"Idempotency-Key": "b"}, expect=429)
        assert limited["error"]["code"] == RateLimited.code
        assert [r["key"] for r in db.execute("SELECT key FROM authsvc.idempotency_keys")] == ["a"]
    finally:
        app.extensions["authsvc"].stores.close()


def test_an_expired_key_starts_over(auth, db):
    auth.signup("expiring@example.com", headers={"Idempotency-Key": "old"})
    db.execute("UPDATE authsvc.idempotency_keys SET expires_at = now() - interval '1 second'")
    # The first answer is gone with its key: this retry runs again (and meets the account).
    auth.signup("expiring@example.com", headers={"Idempotency-Key": "old"}, expect=409)


# -- purge ------------------------------------------------------------------------------------


def _stores(database_url: str, tmp_path: Any, **env: str):
    settings = load_settings(
        pgbouncer.route(
            {
                "DATABASE_URL": database_url,
                "JWT_SECRET_KEY": TEST_SECRET,
                "AUTHSVC_DATA_DIR": str(tmp_path),
                **env,
            }
        )
    )
    return settings, make_stores(settings)


def test_the_purge_removes_what_can_never_be_used_again_and_keeps_the_rest(
    auth, db, database_url, tmp_path
):
    live = auth.signup("live@example.com")["data"]["session"]
    ended = auth.login("live@example.com")["data"]["session"]
    auth.client.post(
        "/api/v1/auth/logout", headers={"Authorization": f"Bearer {ended['access_token']}"}
    )
    rotated = _refresh(auth.client, live["refresh_token"]).get_json()["data"]["session"]
    auth.signup("keyed@example.com", headers={"Idempotency-Key": "expired"})
    db.execute("UPDATE authsvc.idempotency_keys SET expires_at = now() - interval '1 second'")
    settings, stores = _stores(database_url, tmp_path, AUTHSVC_SPENT_TOKEN_RETENTION_SECONDS="0")
    try:
        counts = maintenance.purge(stores, settings)
    finally:
        stores.close()
    assert counts["idempotency_keys"] == 1
    assert counts["refresh_tokens"] >= 1 and counts["sessions"] >= 1
    # What can still be used survives: the live session's newest token.
    assert _refresh(auth.client, rotated["refresh_token"]).status_code == 200
    assert auth.me(ended["access_token"]).get_json()["error"]["code"] == TokenRevoked.code


def test_tables_stay_bounded_under_a_refresh_loop(auth, db, database_url, tmp_path):
    token = auth.signup("loop@example.com")["data"]["session"]["refresh_token"]
    settings, stores = _stores(database_url, tmp_path, AUTHSVC_SPENT_TOKEN_RETENTION_SECONDS="0")
    sizes = []
    try:
        for _ in range(10):
            for _ in range(20):
                token = _refresh(auth.client, token).get_json()["data"]["session"]["refresh_token"]
            maintenance.purge(stores, settings)
            sizes.append(count(db, "authsvc.refresh_tokens"))
    finally:
        stores.close()
    assert sizes == [1] * 10, sizes  # 200 refreshes, never more than the one live token


def test_the_periodic_purge_runs_once_per_interval_across_instances(database_url, tmp_path):
    env = {"AUTHSVC_PURGE_INTERVAL_SECONDS": "3600"}
    first_settings, first = _stores(database_url, tmp_path, **env)
    second_settings, second = _stores(database_url, tmp_path, **env)
    try:
        runs = [
            maintenance.purge_if_due(first, first_settings),
            maintenance.purge_if_due(second, second_settings),
            maintenance.purge_if_due(first, first_settings),
        ]
    finally:
        first.close()
        second.close()
    assert runs[0] is not None, "the first claim of a fresh interval must run the purge"
    assert runs[1] is None and runs[2] is None


def test_the_periodic_purge_can_be_switched_off(database_url, tmp_path):
    settings, stores = _stores(database_url, tmp_path, AUTHSVC_PURGE_INTERVAL_SECONDS="0")
    try:
        assert maintenance.purge_if_due(stores, settings) is None
    finally:
        stores.close()
