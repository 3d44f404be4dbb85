"""Idempotent signup through gunicorn (2 workers), in both layouts."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from authsvc.errors import EmailTaken, IdempotencyKeyReused, SignupFailed
from tests import faults
from tests.reliability.support import Gate, unique_email


def _accounts(layout) -> tuple[int, int]:
    return len(layout.identities()), len(layout.profiles())


def test_a_retry_with_the_same_key_and_body_returns_the_same_user_and_creates_nothing(
    layout, service
):
    email = unique_email()
    first = service.signup(email, key="key-same-body", username="same_body")
    assert first.status == 201, first.body
    again = service.signup(email, key="key-same-body", username="same_body")
    assert again.status == 201, again.body
    assert again.user_id == first.user_id
    assert again.body["data"]["session"]["access_token"]  # a usable answer, not a bare echo
    assert _accounts(layout) == (1, 1)


def test_the_same_key_with_another_body_is_refused_and_creates_nothing(layout, service):
    first = service.signup(unique_email(), key="key-other-body")
    assert first.status == 201, first.body
    other = service.signup(unique_email(), key="key-other-body")
    assert other.status == 422 and other.code == IdempotencyKeyReused.code, other.body
    same_email_other_password = service.signup(
        first.body["data"]["user"]["email"],
        key="key-other-body",
        password="another long passphrase here",
    )
    assert same_email_other_password.code == IdempotencyKeyReused.code
    assert _accounts(layout) == (1, 1)


def test_concurrent_retries_with_one_key_make_one_account(layout, service):
    email = unique_email("concurrent")
    # The first request is held inside its profile insert while the retries arrive, so they
    # really overlap it (on both workers).
    with Gate(layout, "profile_insert") as gate, ThreadPoolExecutor(8) as pool:
        first = pool.submit(service.signup, email, key="key-concurrent")
        gate.wait_held(1)
        retries = [pool.submit(service.signup, email, key="key-concurrent") for _ in range(7)]
        time.sleep(0.5)  # let the retries reach the key (no assertion depends on this)
        gate.release()
        replies = [first.result(), *(r.result() for r in retries)]
    assert [r.status for r in replies] == [201] * 8, [r.body for r in replies]
    assert len({r.user_id for r in replies}) == 1
    assert _accounts(layout) == (1, 1)


def test_concurrent_first_requests_with_one_key_make_one_account(layout, service):
    email = unique_email("burst")
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda _: service.signup(email, key="key-burst"), range(8)))
    assert [r.status for r in replies] == [201] * 8, [r.body for r in replies]
    assert len({r.user_id for r in replies}) == 1
    assert _accounts(layout) == (1, 1)


def test_a_retry_after_a_server_error_runs_the_signup_again(layout, service):
    email = unique_email("retry")
    with faults.profile_insert_raises(layout.app_url):
        failed = service.signup(email, key="key-after-5xx")
    assert failed.status == 500 and failed.code == SignupFailed.code, failed.body
    assert failed.error["details"]["step"] == "profile_insert"
    assert _accounts(layout) == (0, 0)
    retried = service.signup(email, key="key-after-5xx")
    assert retried.status == 201, retried.body
    assert _accounts(layout) == (1, 1)
    assert service.login(email).status == 200


def test_a_client_error_is_replayed_to_a_retry_with_the_same_key(layout, service):
    email = unique_email("taken")
    assert service.signup(email).status == 201
    first = service.signup(email, key="key-taken")
    assert first.status == 409 and first.code == EmailTaken.code
    again = service.signup(email, key="key-taken")
    assert again.status == 409 and again.code == EmailTaken.code
    assert _accounts(layout) == (1, 1)
