"""One contract for every storage implementation: Postgres in one database, Postgres split across
two, and Supabase (Auth's admin API and PostgREST, as HTTP doubles of the hosted project).

Each test speaks only the ports in authsvc/stores/__init__.py; the services rely on exactly
this behaviour whichever backend they are handed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from limits import parse
from limits.strategies import FixedWindowRateLimiter, SlidingWindowCounterRateLimiter

from authsvc.config import load_settings
from authsvc.errors import AuthError, EmailTaken, NotAnonymous, UsernameTaken, ValidationFailed
from authsvc.services import reconcile
from authsvc.stores import (
    COMPLETE,
    PENDING,
    AuditEvent,
    NewProfile,
    Outcome,
    Stores,
    make_stores,
)
from tests import pgbouncer
from tests.conftest import TEST_SECRET, truncate
from tests.supabase.fake import ANON_KEY, SERVICE_KEY, SUPABASE_URL, FakeSupabase

LAYOUTS = ("one_database", "split", "supabase")


@pytest.fixture(scope="session")
def supabase_sessions_owner_url(pg: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database holding only authsvc's own tables, as in a Supabase deployment whose
    DATABASE_URL is not the project's database (no auth.users for keys to point at)."""
    from tests.supabase.conftest import migrate_sessions

    url = pg.create_database("authsvc_contract_supabase")
    migrate_sessions(url, tmp_path_factory.mktemp("contract-supabase"))
    return url


@pytest.fixture(params=LAYOUTS)
def stores(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Stores]:
    env: dict[str, Any] = {"JWT_SECRET_KEY": TEST_SECRET, "AUTHSVC_DATA_DIR": str(tmp_path)}
    fake = None
    if request.param == "split":
        app_url, auth_url = request.getfixturevalue("split_urls")
        env.update(DATABASE_URL=app_url, AUTH_DATABASE_URL=auth_url)
        owners = request.getfixturevalue("split_owner_urls")
    elif request.param == "one_database":
        env["DATABASE_URL"] = request.getfixturevalue("database_url")
        owners = (request.getfixturevalue("owner_url"),)
    else:
        owner = request.getfixturevalue("supabase_sessions_owner_url")
        env["DATABASE_URL"] = request.getfixturevalue("pg").service_url(owner)
        owners = (owner,)
    if request.param == "supabase":
        env.update(  # DATABASE_URL holds the sessions only
            AUTHSVC_BACKEND="supabase",
            SUPABASE_URL=SUPABASE_URL,
            SUPABASE_SERVICE_ROLE_KEY=SERVICE_KEY,
            SUPABASE_ANON_KEY=ANON_KEY,
        )
        owner = request.getfixturevalue("supabase_sessions_owner_url")
        env["DATABASE_URL"], owners = request.getfixturevalue("pg").service_url(owner), (owner,)
        fake = FakeSupabase().__enter__()
    for url in owners:
        truncate(url)  # every test starts from empty tables
    built = make_stores(load_settings(pgbouncer.route(env)))
    yield built
    built.close()
    if fake is not None:
        fake.__exit__(None, None, None)


def _signed_up(stores: Stores, email: str, username: str | None = None) -> UUID:
    """A whole account, through the backend's own signup unit."""
    user_id = uuid4()
    with stores.signup(user_id) as unit:
        unit.create_identity(email, "$argon2id$hash", {"username": username} if username else {})
        unit.insert_profile(NewProfile(user_id, email, username))
        unit.complete()
    return user_id


def test_an_identity_is_created_pending_and_completed_once(stores):
    user_id = uuid4()
    stores.identities.create(user_id, "a@example.com", "$argon2id$x", {"username": "a_1"})
    identity = stores.identities.get(user_id)
    assert identity is not None and identity.signup_state == PENDING
    assert identity.signup_profile == {"username": "a_1"}
    assert stores.identities.mark_complete(user_id) is True
    assert stores.identities.get(user_id).signup_state == COMPLETE
    assert stores.identities.mark_complete(uuid4()) is False


def test_a_taken_email_is_refused_whatever_its_case(stores):
    stores.identities.create(uuid4(), "dup@example.com", "$argon2id$x", {})
    with pytest.raises(EmailTaken):
        stores.identities.create(uuid4(), "DUP@example.com", "$argon2id$x", {})


def test_identities_are_found_by_email_case_insensitively(stores):
    user_id = _signed_up(stores, "Finder@Example.com")
    assert stores.identities.find_by_email("finder@example.com").id == user_id
    assert stores.identities.find_by_email("nobody@example.com") is None


def test_an_identity_is_found_with_its_profile_where_one_database_holds_both(stores):
    user_id = _signed_up(stores, "Both@Example.com", "both_1")
    identity, profile, read = stores.identities.find_with_profile("both@example.com")
    assert identity == stores.identities.find_by_email("both@example.com")
    assert identity is not None and identity.id == user_id
    assert read is stores.profiles.co_located
    assert profile == (stores.profiles.get(user_id) if read else None)
    assert stores.identities.get_with_profile(user_id) == (identity, profile, read)
    assert stores.profiles.present([user_id, uuid4()]) == {user_id}
    # An identity whose profile is missing, and an email nobody has.
    stores.profiles.delete(user_id)
    assert stores.identities.find_with_profile("both@example.com")[:2] == (identity, None)
    assert stores.identities.find_with_profile("nobody@example.com")[:2] == (None, None)
    assert stores.identities.get_with_profile(user_id)[:2] == (identity, None)
    assert stores.identities.get_with_profile(uuid4())[:2] == (None, None)


def test_a_login_session_is_made_only_while_the_checked_password_is_still_the_identitys(stores):
    user_id = _signed_up(stores, "checked@example.com")
    stored = stores.identities.get(user_id).password_hash
    expires = datetime.now(UTC) + timedelta(days=1)
    made = stores.sessions.create_session(user_id, b"h" * 32, expires, "pytest", stored)
    assert made is not None
    if stores.sessions.bans_known:  # the session's statement sees the identity
        assert stores.accounts.get(user_id).last_sign_in_at is not None
        assert stores.identities.set_password_hash(user_id, "$argon2id$new", stored) is True
        stale = stores.sessions.create_session(user_id, b"i" * 32, expires, "pytest", stored)
        assert stale is None


def test_a_pending_identity_is_deleted_and_a_missing_one_is_not(stores):
    user_id = uuid4()
    stores.identities.create(user_id, "p@example.com", "$argon2id$x", {})
    assert stores.identities.delete_pending(user_id) is True
    assert stores.identities.get(user_id) is None
    assert stores.identities.delete_pending(user_id) is False


def test_profiles_are_inserted_returned_updated_and_deleted(stores):
    user_id = uuid4()
    stores.identities.create(user_id, "prof@example.com", "$argon2id$x", {})
    row = stores.profiles.insert(NewProfile(user_id, "prof@example.com", "prof_1", "Prof"))
    assert (row.id, row.username, row.display_name) == (user_id, "prof_1", "Prof")
    assert stores.profiles.get(user_id) == row
    updated = stores.profiles.update(user_id, {"display_name": "Renamed"})
    assert updated.display_name == "Renamed" and updated.username == "prof_1"
    assert stores.profiles.delete(user_id) == 1
    assert stores.profiles.get(user_id) is None
    assert stores.profiles.delete(user_id) == 0


def test_a_taken_username_is_refused(stores):
    _signed_up(stores, "first@example.com", "same_name")
    user_id = uuid4()
    stores.identities.create(user_id, "second@example.com", "$argon2id$x", {})
    with pytest.raises(UsernameTaken):
        stores.profiles.insert(NewProfile(user_id, "second@example.com", "same_name"))


def test_a_signup_unit_completes_a_whole_account(stores):
    user_id = _signed_up(stores, "whole@example.com", "whole")
    assert stores.identities.get(user_id).signup_state == COMPLETE
    assert stores.profiles.get(user_id).username == "whole"


def test_a_signup_unit_compensates_to_nothing_and_says_so(stores):
    user_id = uuid4()
    with stores.signup(user_id) as unit:
        unit.create_identity("undo@example.com", "$argon2id$x", {})
        unit.insert_profile(NewProfile(user_id, "undo@example.com"))
        assert unit.compensate() is Outcome.GONE
    assert stores.identities.get(user_id) is None
    assert stores.profiles.get(user_id) is None


def test_leaving_a_signup_unit_without_completing_undoes_it(stores):
    user_id = uuid4()
    with pytest.raises(RuntimeError), stores.signup(user_id) as unit:
        unit.create_identity("left@example.com", "$argon2id$x", {})
        raise RuntimeError("the caller gave up")
    assert stores.identities.get(user_id) is None


def test_scans_walk_every_row_in_id_order_and_tell_the_old_ones(stores):
    ids = sorted(str(_signed_up(stores, f"scan{i}@example.com")) for i in range(5))
    identities = [row for batch in stores.identities.scan(0) for row in batch]
    profiles = [row for batch in stores.profiles.scan(0) for row in batch]
    assert [r[0] for r in identities] == ids and all(r[1] == COMPLETE for r in identities)
    assert [r[0] for r in profiles] == ids
    assert all(r[-1] for r in identities + profiles)  # past a grace period of 0 s
    young = [row for batch in stores.identities.scan(3600) for row in batch]
    assert not any(r[-1] for r in young)


def test_remove_pending_takes_only_pending_identities(stores):
    done = _signed_up(stores, "done@example.com")
    pending = uuid4()
    stores.identities.create(pending, "half@example.com", "$argon2id$x", {})
    removed, profiles = stores.identities.remove_pending([done, pending], 0)
    assert removed == [pending]
    # Its profile-less removal: nothing went with it (None where the caller removes profiles).
    assert profiles == (0 if stores.profiles.co_located else None)
    assert stores.identities.get(done) is not None and stores.identities.get(pending) is None
    assert stores.identities.present([done, pending]) == {done}


def test_signup_profiles_are_what_complete_identities_asked_for(stores):
    done = _signed_up(stores, "asked@example.com", "asked_for")
    pending = uuid4()
    stores.identities.create(pending, "p2@example.com", "$argon2id$x", {"username": "nope"})
    found = stores.identities.signup_profiles([done, pending])
    assert [(i.id, i.signup_profile.get("username")) for i in found] == [(done, "asked_for")]


def test_reconcile_finds_and_repairs_the_same_drift_in_every_layout(stores):
    whole = _signed_up(stores, "keep@example.com", "keep_me")
    lost_profile = _signed_up(stores, "lost@example.com", "lost_name")
    stores.profiles.delete(lost_profile)
    unfinished = uuid4()
    stores.identities.create(unfinished, "unfinished@example.com", "$argon2id$x", {})
    orphans = []
    if stores.backend == "postgres" and not stores.profiles.co_located:
        # Only two Postgres databases can hold a profile whose identity never existed (a
        # foreign key stops it in one database and in a Supabase project).
        orphans.append(uuid4())
        stores.profiles.insert(NewProfile(orphans[0], "orphan@example.com"))
    drift = reconcile.find_drift(stores, 0)
    assert set(drift.ids["identities_without_profile"]) == {lost_profile, unfinished}
    assert drift.ids["profiles_without_identity"] == orphans
    report, remaining = reconcile.run(stores, 0, repair_drift=True)
    assert not remaining, report
    assert report["repaired"] == {
        "profiles_created": 1,
        "identities_removed": 1,
        "profiles_removed": len(orphans),
    }
    assert stores.profiles.get(lost_profile).username == "lost_name"
    assert stores.identities.get(unfinished) is None
    assert stores.identities.get(whole) is not None and stores.profiles.get(whole) is not None
    assert all(stores.profiles.get(i) is None for i in orphans)


def test_rate_limit_counters_serve_the_limits_strategies(stores):
    # Rate-limit counters are always authsvc's own Postgres; any of limits' strategies that the
    # storage supports counts there exactly.
    storage = stores.rate_limit_storage
    assert storage.check() is True
    sliding = SlidingWindowCounterRateLimiter(storage)
    three = parse("3 per hour")
    assert [sliding.hit(three, "contract", "a") for _ in range(4)] == [True, True, True, False]
    assert sliding.hit(three, "contract", "b") is True  # another key, its own budget
    stats = sliding.get_window_stats(three, "contract", "a")
    assert stats.remaining == 0 and time.time() < stats.reset_time <= time.time() + 3600
    assert sliding.test(three, "contract", "a") is False
    sliding.clear(three, "contract", "a")
    assert sliding.get_window_stats(three, "contract", "a").remaining == 3
    fixed = FixedWindowRateLimiter(storage)
    two = parse("2 per minute")
    assert [fixed.hit(two, "contract", "a") for _ in range(3)] == [True, True, False]
    assert storage.get(two.key_for("contract", "a")) == 3
    reset_time = fixed.get_window_stats(two, "contract", "a").reset_time
    assert time.time() < reset_time <= time.time() + 60
    assert storage.reset() == 2  # "b"'s sliding counter and the fixed one ("a"'s was cleared)
    assert fixed.hit(two, "contract", "a") is True


# -- the account lifecycle (LifecycleStore, anonymous identities) ------------------------------


def _anonymous(stores: Stores) -> UUID:
    with stores.signup(uuid4()) as unit:
        user_id = unit.create_anonymous_identity()
        unit.insert_profile(NewProfile(user_id, None))
        unit.complete()
    return user_id


def test_an_anonymous_identity_has_no_email_until_its_upgrade_lands(stores):
    user_id = _anonymous(stores)
    identity = stores.identities.get(user_id)
    assert identity.is_anonymous and identity.email is None and identity.signup_state == COMPLETE
    with stores.lifecycle.upgrade(user_id) as unit:
        assert unit.update_profile("up@example.com", "upped").email == "up@example.com"
        unit.upgrade_identity("up@example.com", "correct horse battery", "$argon2id$x")
        unit.complete()
    identity = stores.identities.get(user_id)
    assert not identity.is_anonymous and identity.email.lower() == "up@example.com"
    assert stores.profiles.get(user_id).username == "upped"
    assert stores.identities.find_by_email("UP@example.com").id == user_id


def test_an_upgrade_undone_leaves_the_account_anonymous_with_its_profile_as_it_was(stores):
    user_id = _anonymous(stores)
    _signed_up(stores, "holder@example.com")
    with stores.lifecycle.upgrade(user_id) as unit:
        unit.update_profile("holder@example.com", None)
        with pytest.raises((EmailTaken, NotAnonymous, AuthError)):
            unit.upgrade_identity("holder@example.com", "correct horse battery", "$argon2id$x")
        assert unit.compensate() is Outcome.GONE
    assert stores.identities.get(user_id).is_anonymous
    assert stores.profiles.get(user_id).email is None


def test_reset_tokens_are_single_use_and_only_the_newest_works(stores):
    user_id = _signed_up(stores, "reset@example.com")
    identity = stores.identities.get(user_id)
    older = stores.lifecycle.issue_reset(identity, 1800)
    newer = stores.lifecycle.issue_reset(identity, 1800)
    assert stores.lifecycle.reset_owner(older) is None
    assert stores.lifecycle.reset_owner(newer) == user_id
    assert stores.lifecycle.reset_password(newer, "correct horse battery", "$argon2id$y") == user_id
    assert stores.lifecycle.reset_password(newer, "correct horse battery", "$argon2id$y") is None
    assert stores.identities.get(user_id).email_confirmed_at is not None
    assert stores.lifecycle.purge_tokens() == 2


def test_a_verification_token_confirms_the_address_once(stores):
    user_id = _signed_up(stores, "verify@example.com")
    token = stores.lifecycle.issue_verification(stores.identities.get(user_id), 3600)
    assert stores.lifecycle.confirm_email(token) == user_id
    assert stores.lifecycle.confirm_email(token) is None
    assert stores.identities.get(user_id).email_confirmed_at is not None
    assert stores.lifecycle.issue_verification(stores.identities.get(user_id), 3600) is None


def test_a_password_change_revokes_every_session_and_skips_anonymous_accounts(stores):
    from datetime import UTC, datetime, timedelta

    user_id = _signed_up(stores, "change@example.com")
    session = stores.sessions.create_session(
        user_id, b"h" * 32, datetime.now(UTC) + timedelta(days=1), None
    )
    assert stores.lifecycle.change_password(user_id, "correct horse battery", "$argon2id$z")
    assert stores.sessions.check(session).active is False
    assert stores.lifecycle.change_password(_anonymous(stores), "x" * 12, "$argon2id$z") is False


def test_only_idle_anonymous_accounts_are_found_and_removed(stores):
    young = _anonymous(stores)
    assert stores.lifecycle.idle_anonymous(3600, 10) == []
    assert young in stores.lifecycle.idle_anonymous(0, 10)
    _signed_up(stores, "not-anonymous@example.com")
    assert stores.lifecycle.remove_anonymous([young], 3600) == []
    assert stores.lifecycle.remove_anonymous([young], 0) == [young]
    assert stores.identities.get(young) is None


# -- account lifecycle (admin): AccountAdmin and AuditLog --------------------------------------


def _walk(stores: Stores, search: str | None = None, limit: int = 2) -> list[list[str]]:
    """Every page of the listing, as emails."""
    pages, cursor = [], None
    while True:
        accounts, cursor = stores.accounts.page(search, cursor, limit)
        pages.append([a.identity.email for a in accounts])
        if cursor is None:
            return pages


def test_accounts_are_listed_newest_first_page_by_page(stores):
    for i in range(5):
        _signed_up(stores, f"list{i}@example.com", f"list_{i}")
        time.sleep(0.01)  # distinct creation times, also in Supabase's listing
    pages = _walk(stores, limit=2)
    assert [e for page in pages for e in page] == [f"list{i}@example.com" for i in range(4, -1, -1)]
    assert all(len(page) <= 2 for page in pages) and len(pages) >= 3
    accounts, _ = stores.accounts.page(None, None, 10)
    assert [a.profile.username for a in accounts] == [f"list_{i}" for i in range(4, -1, -1)]
    assert all(a.consistent and a.roles == frozenset() for a in accounts)


def test_the_listing_searches_emails_case_insensitively_and_literally(stores):
    for email in ("Ann@Example.com", "annie@example.org", "bob@example.com", "a_n@example.com"):
        _signed_up(stores, email)
    found = [e for page in _walk(stores, "ANN", limit=1) for e in page]
    assert sorted(e.lower() for e in found) == ["ann@example.com", "annie@example.org"]
    assert [e for page in _walk(stores, "a_n") for e in page] == ["a_n@example.com"]
    assert stores.accounts.page("nobody", None, 10) == ([], None)


@pytest.mark.parametrize("cursor", ["not a cursor", "bm90IGpzb24", "WyJ4IiwgMV0", "x" * 600])
def test_a_cursor_the_store_did_not_make_is_refused(stores, cursor):
    with pytest.raises(ValidationFailed):
        stores.accounts.page(None, cursor, 10)
    with pytest.raises(ValidationFailed):
        stores.audit.page(None, None, cursor, 10)


def test_an_account_shows_both_rows_and_whether_they_agree(stores):
    user_id = _signed_up(stores, "both@example.com", "both")
    account = stores.accounts.get(user_id)
    assert account.identity.email == "both@example.com" and account.profile.username == "both"
    assert account.consistent
    stores.profiles.delete(user_id)
    alone = stores.accounts.get(user_id)
    assert alone.profile is None and not alone.consistent
    pending = uuid4()
    stores.identities.create(pending, "pending@example.com", "$argon2id$x", {})
    stores.profiles.insert(NewProfile(pending, "pending@example.com"))
    assert not stores.accounts.get(pending).consistent  # a profile, but no complete identity
    assert stores.accounts.get(uuid4()) is None


def test_roles_are_granted_and_taken_back(stores):
    user_id = _signed_up(stores, "boss@example.com")
    assert stores.accounts.roles(user_id) == frozenset()
    assert stores.accounts.set_roles(user_id, frozenset({"admin"})) is True
    assert stores.accounts.roles(user_id) == {"admin"}
    assert stores.accounts.get(user_id).roles == {"admin"}
    assert stores.accounts.set_roles(user_id, frozenset()) is True
    assert stores.accounts.roles(user_id) == frozenset()
    assert stores.accounts.roles(uuid4()) is None
    assert stores.accounts.set_roles(uuid4(), frozenset({"admin"})) is False


def test_a_ban_runs_from_now_for_its_duration_and_is_lifted(stores):
    user_id = _signed_up(stores, "banned@example.com")
    before = datetime.now(UTC)
    banned = stores.accounts.set_ban(user_id, 3600)
    assert before + timedelta(seconds=3590) < banned.banned_until
    assert banned.banned_until < datetime.now(UTC) + timedelta(seconds=3610)
    assert stores.identities.get(user_id).banned_until == banned.banned_until
    assert stores.accounts.set_ban(user_id, None).banned_until is None
    assert stores.identities.get(user_id).banned_until is None
    assert stores.accounts.set_ban(uuid4(), 60) is None


def test_removing_an_account_takes_both_rows(stores):
    user_id = _signed_up(stores, "gone@example.com", "gone")
    keep = _signed_up(stores, "stays@example.com", "stays")
    assert stores.accounts.remove(user_id) is True
    assert stores.identities.get(user_id) is None and stores.profiles.get(user_id) is None
    assert stores.accounts.get(user_id) is None
    assert stores.accounts.get(keep).consistent
    assert stores.identities.find_by_email("gone@example.com") is None


def _session(stores: Stores, user_id: UUID, token_hash: bytes) -> UUID:
    expires = datetime.now(UTC) + timedelta(days=1)
    return stores.sessions.create_session(user_id, token_hash, expires, "pytest")


def test_sessions_are_counted_as_they_are_revoked_and_traced_to_their_user(stores):
    user_id = _signed_up(stores, "sessions@example.com")
    other = _signed_up(stores, "other@example.com")
    first = _session(stores, user_id, b"1" * 32)
    _session(stores, user_id, b"2" * 32)
    kept = _session(stores, other, b"3" * 32)
    started = stores.accounts.session_started(first)
    assert started is not None and abs(datetime.now(UTC) - started) < timedelta(minutes=1)
    assert stores.accounts.refresh_token_user(b"2" * 32) == user_id
    assert stores.accounts.refresh_token_user(b"9" * 32) is None
    assert stores.accounts.revoke_sessions(user_id, "admin") == 2
    assert stores.accounts.revoke_sessions(user_id, "admin") == 0
    assert not stores.sessions.check(first).active and stores.sessions.check(kept).active
    assert stores.accounts.session_started(first) is None


def test_audit_events_are_appended_and_paged_newest_first(stores):
    alice, bob = uuid4(), uuid4()
    for n in range(5):
        stores.audit.append(
            AuditEvent(
                "login",
                alice if n % 2 == 0 else bob,
                request_id=f"req-{n}",
                ip="192.0.2.1",
                user_agent="pytest",
                details={"n": n},
            )
        )
    stores.audit.append(AuditEvent("user_banned", alice, actor="admin", actor_id=bob))
    events, cursor = stores.audit.page(alice, None, None, 2)
    assert [e.type for e in events] == ["user_banned", "login"] and cursor is not None
    assert events[0].actor == "admin" and events[0].actor_id == bob
    rest, end = stores.audit.page(alice, None, cursor, 10)
    assert [e.details["n"] for e in rest] == [2, 0] and end is None
    logins, _ = stores.audit.page(None, "login", None, 10)
    assert [e.request_id for e in logins] == [f"req-{n}" for n in range(4, -1, -1)]
    first = logins[-1]
    assert (first.user_id, first.ip, first.user_agent) == (alice, "192.0.2.1", "pytest")
    assert first.at is not None and first.id is not None


def test_the_audit_purge_removes_only_events_past_the_retention(stores):
    url = stores.audit.db.url
    stores.audit.append(AuditEvent("login", uuid4()))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO authsvc.audit_events (type, at) VALUES ('logout', now() - interval "
            "'400 days'), ('logout', now() - interval '20 days')"
        )
    assert stores.audit.purge(365) == 1
    assert stores.audit.purge(10) == 1
    events, _ = stores.audit.page(None, None, None, 10)
    assert [e.type for e in events] == ["login"]
    with pytest.raises(Exception):  # noqa: B017 - the database refuses a retention under a day
        stores.audit.purge(0)
