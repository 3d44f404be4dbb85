"""One contract for every storage implementation: Postgres in one database, Postgres split across
two, and Supabase (Auth's admin API and PostgREST, as HTTP doubles of the hosted project).

Each test speaks only the ports in authsvc/stores/__init__.py; the services rely on exactly
this behaviour whichever backend they are handed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from uuid import UUID, uuid4

import pytest
from limits import parse
from limits.strategies import FixedWindowRateLimiter, SlidingWindowCounterRateLimiter

from authsvc.config import load_settings
from authsvc.errors import EmailTaken, UsernameTaken
from authsvc.services import reconcile
from authsvc.stores import COMPLETE, PENDING, NewProfile, Outcome, Stores, make_stores
from tests import pgbouncer
from tests.conftest import TEST_SECRET, truncate
from tests.supabase.fake import ANON_KEY, SERVICE_KEY, SUPABASE_URL, FakeSupabase

LAYOUTS = ("one_database", "split", "supabase")


@pytest.fixture(params=LAYOUTS)
def stores(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Stores]:
    env: dict[str, Any] = {"JWT_SECRET_KEY": TEST_SECRET, "AUTHSVC_DATA_DIR": str(tmp_path)}
    fake = None
    if request.param == "split":
        app_url, auth_url = request.getfixturevalue("split_urls")
        env.update(DATABASE_URL=app_url, AUTH_DATABASE_URL=auth_url)
        owners = request.getfixturevalue("split_owner_urls")
    else:
        env["DATABASE_URL"] = request.getfixturevalue("database_url")
        owners = (request.getfixturevalue("owner_url"),)
    if request.param == "supabase":
        env.update(  # DATABASE_URL holds the sessions only
            AUTHSVC_BACKEND="supabase",
            SUPABASE_URL=SUPABASE_URL,
            SUPABASE_SERVICE_ROLE_KEY=SERVICE_KEY,
            SUPABASE_ANON_KEY=ANON_KEY,
        )
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
    assert stores.identities.remove_pending([done, pending], 0) == [pending]
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
