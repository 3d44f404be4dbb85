"""Two gunicorn instances (2 workers each) on the same database(s): duplicate-email and
duplicate-username races across them still give exactly one account."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from authsvc.errors import EmailTaken, UsernameTaken
from tests.reliability.support import report, unique_email
from tests.service import Reply

ROUNDS = 12
RACERS = 8  # half on each instance


def _race(instances, make_request) -> list[Reply]:
    barrier = threading.Barrier(RACERS)

    def racer(i: int) -> Reply:
        service = instances[i % 2]
        barrier.wait()
        return make_request(service, i)

    with ThreadPoolExecutor(RACERS) as pool:
        return list(pool.map(racer, range(RACERS)))


def test_duplicate_emails_racing_across_two_instances_give_exactly_one_account(layout, services):
    instances = (services.get(layout), services.get(layout, name="second"))
    assert instances[0].port != instances[1].port
    winners: list[str] = []
    for _ in range(ROUNDS):
        email = unique_email("race")
        replies = _race(instances, lambda s, i, e=email: s.signup(e, username=f"r{i}_{e[5:15]}"))
        statuses = sorted(r.status for r in replies)
        assert statuses == [201] + [409] * (RACERS - 1), [r.body for r in replies]
        assert {r.code for r in replies if r.status == 409} == {EmailTaken.code}
        winners.append(next(r.user_id for r in replies if r.status == 201))
        identity, profile = layout.trace(email)
        assert identity["signup_state"] == "complete" and str(identity["id"]) == winners[-1]
        assert str(profile["id"]) == winners[-1]
    assert len(layout.identities()) == ROUNDS and len(layout.profiles()) == ROUNDS
    # Losers left nothing behind: no pending identity, no stray profile (their usernames).
    assert layout.drift()["pending_identities"] == 0
    report(
        f"instances[{layout.name}]: {ROUNDS} rounds x {RACERS} racers on 2 instances -> "
        f"{ROUNDS} accounts, {ROUNDS * (RACERS - 1)} x 409 EMAIL_TAKEN"
    )


def test_duplicate_usernames_racing_across_two_instances_give_exactly_one_account(layout, services):
    instances = (services.get(layout), services.get(layout, name="second"))
    for n in range(ROUNDS // 2):
        name = f"taken_{n}"
        replies = _race(instances, lambda s, i, u=name: s.signup(unique_email("u"), username=u))
        assert sorted(r.status for r in replies) == [201] + [409] * (RACERS - 1)
        assert {r.code for r in replies if r.status == 409} == {UsernameTaken.code}
    # Every loser's identity was compensated, in both databases.
    assert len(layout.identities()) == ROUNDS // 2 and len(layout.profiles()) == ROUNDS // 2
    assert layout.drift()["pending_identities"] == 0
