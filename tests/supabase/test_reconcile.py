"""`authsvc reconcile` in Supabase mode: list_users and the profile table, page by page."""

from __future__ import annotations

import json

import pytest

from authsvc.cli import main
from authsvc.stores.supabase import identities as supabase_identities
from authsvc.stores.supabase import profiles as supabase_profiles
from tests.supabase.fake import FakeSupabase

OLD = 3600  # seconds; past the default grace period of 300


def reconcile(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, dict]:
    capsys.readouterr()
    status = main(["reconcile", "--json", *args])
    return status, json.loads(capsys.readouterr().out)


@pytest.fixture
def drifted(fake: FakeSupabase) -> dict[str, str]:
    """One project with every kind of drift, and healthy users around it."""
    ids = {}
    for n in range(3):
        uid = fake.add_user(f"ok{n}@example.com", age=OLD)
        fake.add_profile(uid, f"ok{n}@example.com", age=OLD)
        ids[f"ok{n}"] = uid
    ids["pending_alone"] = fake.add_user("p@example.com", state="pending", age=OLD)
    ids["complete_alone"] = fake.add_user(
        "c@example.com", age=OLD, signup_profile={"username": "carol", "display_name": "Carol"}
    )
    # user_metadata is the user's own to write: a profile is never recreated from it.
    ids["self_promoted"] = fake.add_user(
        "s@example.com", age=OLD, metadata={"username": "admin", "display_name": "Root"}
    )
    ids["pending_with_profile"] = fake.add_user("u@example.com", state="pending", age=OLD)
    fake.add_profile(ids["pending_with_profile"], "u@example.com", age=OLD)
    ids["orphan_profile"] = "5b3f0a34-6f0e-4d9e-9d52-1b7f6f9a8c11"
    fake.add_profile(ids["orphan_profile"], "gone@example.com", age=OLD)
    ids["outsider"] = fake.add_user("x@example.com", state=None, age=OLD)  # no marker, no profile
    ids["young_pending"] = fake.add_user("y@example.com", state="pending", age=5)
    return ids


def test_reconcile_pages_through_users_and_profiles_and_reports_drift(
    cli_env, fake, drifted, capsys, monkeypatch
):
    monkeypatch.setattr(supabase_identities, "USERS_PER_PAGE", 2)
    monkeypatch.setattr(supabase_profiles, "PAGE", 2)
    status, result = reconcile(capsys)
    assert status == 1
    assert sorted(result["identities_without_profile"]["ids"]) == sorted(
        [
            drifted["pending_alone"],
            drifted["complete_alone"],
            drifted["outsider"],
            drifted["self_promoted"],
        ]
    )
    assert result["unfinished_signups"]["ids"] == [drifted["pending_with_profile"]]
    assert result["profiles_without_identity"]["ids"] == [drifted["orphan_profile"]]
    assert drifted["young_pending"] not in json.dumps(result)  # inside the grace period
    # 9 users at 2 a page: pages 1-5, then an empty page 6 ends the walk.
    pages = [(r.url.params["page"], r.url.params["per_page"]) for r in fake.requests("list_users")]
    assert pages == [(str(p), "2") for p in range(1, 7)]
    # 5 profiles at 2 a page, by keyset on id: 3 pages and an empty one.
    selects = fake.requests("select_profiles")
    assert len(selects) == 4
    assert "id" not in selects[0].url.params
    assert all(r.url.params["order"] == "id.asc" and r.url.params["limit"] == "2" for r in selects)
    assert selects[1].url.params["id"].startswith("gt.")


def test_reconcile_repair_gives_back_what_was_acknowledged_and_removes_the_rest(
    cli_env, fake, drifted, capsys
):
    status, result = reconcile(capsys, "--repair")
    assert status == 0, result
    assert result["repaired"] == {
        "profiles_created": 3,
        "identities_removed": 2,
        # The orphan, and the profile public.users' cascade took with its pending identity.
        "profiles_removed": 2,
    }
    # Complete identities were answered 201 once: their profiles come back.
    assert fake.profiles[drifted["complete_alone"]]["username"] == "carol"
    assert fake.profiles[drifted["outsider"]]["email"] == "x@example.com"
    promoted = fake.profiles[drifted["self_promoted"]]
    assert (promoted["username"], promoted["display_name"]) == (None, None)
    # Pending ones never were: removed, with any profile they had.
    for name in ("pending_alone", "pending_with_profile"):
        assert drifted[name] not in fake.users and drifted[name] not in fake.profiles
    assert sorted(r.url.path.rsplit("/", 1)[1] for r in fake.requests("delete_user")) == sorted(
        [drifted["pending_alone"], drifted["pending_with_profile"]]
    )
    assert drifted["orphan_profile"] not in fake.profiles
    assert fake.state(drifted["young_pending"]) == "pending"  # left to its signup
    assert all(drifted[f"ok{n}"] in fake.profiles for n in range(3))
    status, result = reconcile(capsys)
    assert status == 0 and result["remaining"] == 0


def test_a_profile_supabase_refuses_does_not_stop_the_repair(cli_env, fake, capsys):
    from tests.supabase import fake as sb

    first = fake.add_user("a@example.com", age=OLD)
    second = fake.add_user("b@example.com", age=OLD)
    fake.fail("insert_profile", sb.permission_denied())
    status, result = reconcile(capsys, "--repair")
    assert result["repaired"]["profiles_created"] == 1
    assert (first in fake.profiles) != (second in fake.profiles)
    assert status == 1  # the refused one is still drift


def test_reconcile_with_no_drift_exits_0(cli_env, fake, capsys):
    uid = fake.add_user("a@example.com", age=OLD)
    fake.add_profile(uid, "a@example.com", age=OLD)
    status, result = reconcile(capsys)
    assert status == 0 and result["remaining"] == 0


def test_reconcile_that_cannot_reach_supabase_exits_2(cli_env, fake, capsys):
    from tests.supabase import fake as sb

    fake.fail("list_users", sb.auth_json(503, {"message": "unavailable"}))
    status, result = reconcile(capsys)
    assert status == 2 and "error" in result


def test_find_identity_by_email_reads_the_profile_first_then_the_users(app, fake):
    identities = app.extensions["authsvc"].stores.identities
    with_profile = fake.add_user("first_last@example.com")
    fake.add_profile(with_profile, "First_Last@example.com")
    fake.add_user("firstxlast@example.com")  # `_` must not match any character
    alone = fake.add_user("alone@example.com")
    assert str(identities.find_by_email("FIRST_LAST@example.com").id) == with_profile
    (select,) = fake.requests("select_profiles")
    assert select.url.params["email"] == "ilike.FIRST\\_LAST@example.com"
    assert str(identities.find_by_email("alone@example.com").id) == alone
    assert identities.find_by_email("nobody@example.com") is None
