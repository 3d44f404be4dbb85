"""The saga driven from plain Python, with no app: the store is handed in (DESIGN.md)."""

from __future__ import annotations

import pytest

from authsvc.config import load_settings
from authsvc.errors import EmailTaken, SignupFailed
from authsvc.passwords import Hasher
from authsvc.services import signup
from authsvc.stores import make_stores
from tests import faults, pgbouncer
from tests.conftest import PASSWORD, TEST_SECRET, assert_no_trace, identity_row, profile_row

HASHER = Hasher(1, 8, 1)


@pytest.fixture
def pg_store(database_url, tmp_path):
    settings = load_settings(
        pgbouncer.route(
            {
                "DATABASE_URL": database_url,
                "AUTH_DATABASE_URL": "",
                "JWT_SECRET_KEY": TEST_SECRET,
                "AUTHSVC_DATA_DIR": str(tmp_path),
            }
        )
    )
    stores = make_stores(settings)
    yield stores
    stores.close()


def test_the_saga_runs_without_an_app(pg_store, db):
    profile = signup.run(
        pg_store, HASHER, signup.SignupData("plain@example.com", PASSWORD, "plain")
    )
    assert profile_row(db, profile.id)["username"] == "plain"
    assert identity_row(db, "plain@example.com")["signup_state"] == "complete"


def test_the_saga_names_the_step_and_compensates(pg_store, db, owner_url):
    with faults.profile_insert_returns_null(owner_url), pytest.raises(SignupFailed) as info:
        signup.run(pg_store, HASHER, signup.SignupData("plain@example.com", PASSWORD))
    assert info.value.step == "profile_verify" and info.value.reason == "no_row_returned"
    assert info.value.details["compensated"] is True
    assert isinstance(info.value.__cause__, signup.ProfileMismatch)
    assert_no_trace(db, "plain@example.com")


def test_the_saga_passes_client_errors_through_after_compensating(pg_store, db):
    signup.run(pg_store, HASHER, signup.SignupData("dup@example.com", PASSWORD))
    with pytest.raises(EmailTaken):
        signup.run(pg_store, HASHER, signup.SignupData("DUP@example.com", PASSWORD))


def test_verify_returned_refuses_no_row_and_other_rows():
    from uuid import uuid4

    from authsvc.stores import Profile

    uid = uuid4()
    with pytest.raises(signup.ProfileMismatch, match="no_row_returned"):
        signup.verify_returned(None, uid, "a@example.com")
    with pytest.raises(signup.ProfileMismatch, match="id_mismatch"):
        signup.verify_returned(Profile(uuid4(), "a@example.com", None, None), uid, "a@example.com")
    with pytest.raises(signup.ProfileMismatch, match="email_mismatch"):
        signup.verify_returned(Profile(uid, "b@example.com", None, None), uid, "a@example.com")
    row = Profile(uid, "A@example.com", None, None)
    assert signup.verify_returned(row, uid, "a@example.com") is row


# -- the same saga across two databases: compensation is a delete ----------------------------


@pytest.fixture
def split_store(split_urls, tmp_path):
    app_url, auth_url = split_urls
    settings = load_settings(
        pgbouncer.route(
            {
                "DATABASE_URL": app_url,
                "AUTH_DATABASE_URL": auth_url,
                "JWT_SECRET_KEY": TEST_SECRET,
                "AUTHSVC_DATA_DIR": str(tmp_path),
            }
        )
    )
    assert settings.split
    stores = make_stores(settings)
    yield stores
    stores.close()


def split_rows(split_owner_urls, email):
    import psycopg
    from psycopg.rows import dict_row

    app_url, auth_url = split_owner_urls
    with (
        psycopg.connect(auth_url, row_factory=dict_row) as a,
        psycopg.connect(app_url, row_factory=dict_row) as p,
    ):
        identity = a.execute(
            "SELECT * FROM auth.users WHERE lower(email) = lower(%s)", (email,)
        ).fetchone()
        profile = p.execute(
            "SELECT * FROM public.users WHERE lower(email) = lower(%s)", (email,)
        ).fetchone()
    return identity, profile


def test_split_signup_writes_both_databases(split_store, split_owner_urls):
    profile = signup.run(split_store, HASHER, signup.SignupData("two@example.com", PASSWORD))
    identity, row = split_rows(split_owner_urls, "two@example.com")
    assert identity["id"] == row["id"] == profile.id
    assert identity["signup_state"] == "complete"


@pytest.mark.parametrize(
    ("fault", "step", "reason"),
    [
        (faults.profile_insert_raises, "profile_insert", "trigger_raised"),
        (faults.profile_insert_returns_null, "profile_verify", "no_row_returned"),
        (faults.profile_email_rewritten, "profile_verify", "email_mismatch"),
        (faults.not_valid_check, "profile_insert", "check_violation"),
    ],
)
def test_split_signup_compensates_by_deleting_across_databases(
    split_store, split_owner_urls, fault, step, reason
):
    with fault(split_owner_urls[0]), pytest.raises(SignupFailed) as info:
        signup.run(split_store, HASHER, signup.SignupData("two@example.com", PASSWORD))
    assert (info.value.step, info.value.reason) == (step, reason)
    assert info.value.details["compensated"] is True
    assert split_rows(split_owner_urls, "two@example.com") == (None, None)


@pytest.mark.parametrize(
    ("fault", "where", "step"),
    [
        (faults.rls_refuses_insert, "profiles", "profile_insert"),
        (lambda url: faults.revoked(url, "INSERT", "public.users"), "profiles", "profile_insert"),
        (lambda url: faults.revoked(url, "UPDATE", "auth.users"), "identities", "complete"),
    ],
    ids=["rls-profile", "revoked-profile-insert", "revoked-identity-update"],
)
def test_split_signup_refused_by_the_roles_privileges_deletes_what_it_wrote(
    split_store, split_owner_urls, service_role, fault, where, step
):
    app_url, auth_url = split_owner_urls
    with fault(app_url if where == "profiles" else auth_url), pytest.raises(SignupFailed) as info:
        signup.run(split_store, HASHER, signup.SignupData("two@example.com", PASSWORD, "two"))
    assert (info.value.step, info.value.reason) == (step, "permission_denied")
    assert info.value.details["compensated"] is True
    assert split_rows(split_owner_urls, "two@example.com") == (None, None)


def test_split_duplicate_email_is_409_with_no_leftover(split_store, split_owner_urls):
    signup.run(split_store, HASHER, signup.SignupData("two@example.com", PASSWORD, "two"))
    with pytest.raises(EmailTaken):
        signup.run(split_store, HASHER, signup.SignupData("TWO@example.com", PASSWORD, "other"))
    import psycopg

    with psycopg.connect(split_owner_urls[0]) as conn:
        assert conn.execute("SELECT count(*) FROM public.users").fetchone()[0] == 1
