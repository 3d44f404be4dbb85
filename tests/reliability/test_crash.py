"""A worker SIGKILLed in the middle of a signup, and faults the saga must survive in both
layouts: never half a user that can log in, and `authsvc reconcile --repair` finishes the job."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from authsvc.errors import InvalidCredentials, SignupFailed
from tests import faults
from tests.reliability.support import Gate, reconcile, report, unique_email, workers_holding
from tests.service import NoAnswer, wait_for


@pytest.mark.parametrize("step", ["identity_create", "profile_insert"])
def test_a_worker_killed_mid_signup_leaves_at_most_a_pending_identity_that_reconcile_removes(
    layout, service, state_dir, step
):
    email = unique_email("killed")
    with Gate(layout, step) as gate, ThreadPoolExecutor(1) as pool:
        pending = pool.submit(service.signup, email)
        held = gate.wait_held(1)
        owners = workers_holding(service, held)
        assert len(owners) == 1, owners
        (victim,) = owners
        service.kill_worker(victim)
        with pytest.raises(NoAnswer):
            pending.result()
    # The gate is gone: the killed worker's statement has ended on the server.
    identity, profile = layout.trace(email)
    if not layout.split:
        # One transaction that never committed: the server rolled it back.
        assert identity is None and profile is None
    else:
        assert identity is not None and identity["signup_state"] == "pending"
    denied = service.login(email)
    assert denied.status == 401 and denied.code == InvalidCredentials.code

    found = reconcile(layout, "--json", data_dir=state_dir)
    drift = found.json
    if layout.split:
        assert found.code == 1, found
        listed = drift["identities_without_profile"]["ids"] + drift["unfinished_signups"]["ids"]
        assert listed == [str(identity["id"])]
    else:
        assert found.code == 0, found
    repaired = reconcile(layout, "--repair", "--json", data_dir=state_dir)
    assert repaired.code == 0, repaired
    assert layout.trace(email) == (None, None)
    assert layout.drift() == {
        "identities_without_profile": 0,
        "profiles_without_identity": 0,
        "pending_identities": 0,
    }
    # The master replaced the worker; the service goes on.
    wait_for(
        lambda: len(service.worker_pids()) == 2 and victim not in service.worker_pids(),
        30,
        "gunicorn to replace the killed worker",
    )
    after = service.signup(unique_email("after-kill"))
    assert after.status == 201, after.body
    report(
        f"crash[{layout.name}, {step}]: worker {victim} SIGKILLed mid-signup; before repair "
        f"identity={identity and identity['signup_state']} profile={profile is not None}; "
        f"reconcile exit {found.code} -> repair exit {repaired.code}"
    )


def test_an_identity_insert_that_writes_no_row_fails_at_identity_create(layout, service):
    email = unique_email("null-identity")
    with faults.trigger(layout.auth_url, "auth.users", "RETURN NULL;"):
        reply = service.signup(email)
    assert reply.status == 500 and reply.code == SignupFailed.code, reply.body
    assert reply.error["details"]["step"] == "identity_create"
    assert reply.error["details"]["compensated"] is True
    assert layout.trace(email) == (None, None)
    assert layout.drift()["profiles_without_identity"] == 0


def test_a_failed_compensation_leaves_a_pending_user_that_cannot_log_in_and_is_removed(
    layout, service, state_dir
):
    """The profile comes back wrong and neither delete of the compensation works: the client
    is told the account failed, so reconcile must remove it, never complete it."""
    email = unique_email("stuck")
    with (
        faults.profile_email_rewritten(layout.app_url),
        faults.trigger(
            layout.app_url,
            "public.users",
            "RAISE EXCEPTION 'no delete';",
            when="BEFORE DELETE",
            name="authsvc_fault_del_profile",
        ),
        faults.trigger(
            layout.auth_url,
            "auth.users",
            "RAISE EXCEPTION 'no delete';",
            when="BEFORE DELETE",
            name="authsvc_fault_del_identity",
        ),
    ):
        reply = service.signup(email)
    assert reply.status == 500 and reply.code == SignupFailed.code, reply.body
    details = reply.error["details"]
    assert details["step"] == "profile_verify" and details["reason"] == "email_mismatch"
    # One database: the rollback needs no delete. Two: both deletes were refused.
    assert details["compensated"] is (not layout.split)
    assert service.login(email).status == 401
    result = reconcile(layout, "--repair", "--json", data_dir=state_dir)
    assert result.code == 0, result
    assert layout.trace(email) == (None, None)
    assert layout.drift()["profiles_without_identity"] == 0
    assert service.login(email).status == 401


def test_reconcile_racing_a_signup_in_flight_never_yields_a_201_without_an_identity(
    layout, service, state_dir
):
    """With a grace period shorter than a signup, reconcile may remove a pending identity
    while its signup is still running; that signup must then fail, not answer 201."""
    email = unique_email("raced")
    with Gate(layout, "profile_insert") as gate, ThreadPoolExecutor(1) as pool:
        pending = pool.submit(service.signup, email)
        gate.wait_held(1)
        removal = reconcile(layout, "--repair", "--json", data_dir=state_dir)
        gate.release()
        reply = pending.result()
    assert removal.code == 0, removal
    if layout.split:
        # Nothing holds a lock across two databases: the pending identity was removed.
        assert removal.json["repaired"]["identities_removed"] == 1
        assert reply.status == 500 and reply.error["details"]["step"] == "complete", reply.body
        assert layout.trace(email) == (None, None)
    else:
        # The identity is inside the signup's open transaction: invisible, untouched.
        assert reply.status == 201, reply.body
        assert service.login(email).status == 200
    assert layout.drift()["profiles_without_identity"] == 0
