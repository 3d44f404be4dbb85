"""The randomized run: over a thousand signups per layout against gunicorn (2 workers), with
faults injected at every step of the saga through real means, then the real
`authsvc reconcile --repair`, then the guarantee checked with plain SQL and real logins:

- zero identities without a profile and zero profiles without an identity;
- every signup answered 201 can log in;
- every signup that failed left no row, and its error named its step (or was a 503);
- a signup whose worker was SIGKILLed left nothing, or (its last statement having landed
  after the kill) a whole user, never half of one.

The seed is printed at the end of the run, whether it passed or failed (see conftest.py);
AUTHSVC_CHAOS_SEED=<seed> replays the same schedule.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field
from typing import Any

import pytest

from authsvc.errors import DatabaseUnavailable, SignupFailed
from tests import faults
from tests.reliability.support import (
    Gate,
    Layout,
    reconcile,
    report,
    start_server,
    stop_server,
    unique_email,
    workers_holding,
)
from tests.service import Gunicorn, NoAnswer, Reply

MIN_SIGNUPS = 1000
CLEAN_BATCH = 20
FAULT_BATCH = 16
HELD = 4  # at most one worker's threads, so all of them reach the gate
THREADS = 8


def _compensation_blocked(lay: Layout) -> AbstractContextManager[None]:
    """The profile comes back wrong, and both deletes of the compensation are refused."""
    stack = ExitStack()
    stack.enter_context(faults.profile_email_rewritten(lay.app_url))
    stack.enter_context(
        faults.trigger(
            lay.app_url,
            "public.users",
            "RAISE EXCEPTION 'no';",
            when="BEFORE DELETE",
            name="authsvc_fault_del_p",
        )
    )
    stack.enter_context(
        faults.trigger(
            lay.auth_url,
            "auth.users",
            "RAISE EXCEPTION 'no';",
            when="BEFORE DELETE",
            name="authsvc_fault_del_i",
        )
    )
    return stack


def _profile_delete_refused(lay: Layout) -> AbstractContextManager[None]:
    """The profile comes back wrong, and the compensation cannot delete it (only the pending
    identity goes): across two databases that leaves a profile without an identity."""
    stack = ExitStack()
    stack.enter_context(faults.profile_email_rewritten(lay.app_url))
    stack.enter_context(
        faults.trigger(
            lay.app_url,
            "public.users",
            "RAISE EXCEPTION 'no';",
            when="BEFORE DELETE",
            name="authsvc_fault_del_p",
        )
    )
    return stack


# kind -> (fault, the step the error must name, the reason it must give)
PLAIN: dict[str, tuple[Callable[[Layout], AbstractContextManager[Any]], str, str]] = {
    "identity_trigger_raises": (
        lambda lay: faults.trigger(lay.auth_url, "auth.users", "RAISE EXCEPTION 'refused';"),
        "identity_create",
        "trigger_raised",
    ),
    "identity_trigger_returns_null": (
        lambda lay: faults.trigger(lay.auth_url, "auth.users", "RETURN NULL;"),
        "identity_create",
        "no_row_written",
    ),
    "identity_not_valid_check": (
        lambda lay: faults.not_valid_check(lay.auth_url, "auth.users"),
        "identity_create",
        "check_violation",
    ),
    "profile_trigger_raises": (
        lambda lay: faults.profile_insert_raises(lay.app_url),
        "profile_insert",
        "trigger_raised",
    ),
    "profile_trigger_returns_null": (
        lambda lay: faults.profile_insert_returns_null(lay.app_url),
        "profile_verify",
        "no_row_returned",
    ),
    "profile_not_valid_check": (
        lambda lay: faults.not_valid_check(lay.app_url),
        "profile_insert",
        "check_violation",
    ),
    "profile_rewritten_by_trigger": (
        lambda lay: faults.profile_email_rewritten(lay.app_url),
        "profile_verify",
        "email_mismatch",
    ),
    "complete_trigger_raises": (
        lambda lay: faults.trigger(
            lay.auth_url, "auth.users", "RAISE EXCEPTION 'refused';", when="BEFORE UPDATE"
        ),
        "complete",
        "trigger_raised",
    ),
    # The service's role refused by the database (it is no superuser and owns no table).
    "profile_rls_without_insert_policy": (
        lambda lay: faults.rls_refuses_insert(lay.app_url),
        "profile_insert",
        "permission_denied",
    ),
    "profile_insert_revoked": (
        lambda lay: faults.revoked(lay.app_url, "INSERT", "public.users"),
        "profile_insert",
        "permission_denied",
    ),
    "complete_update_revoked": (
        lambda lay: faults.revoked(lay.auth_url, "UPDATE", "auth.users"),
        "complete",
        "permission_denied",
    ),
    "compensation_deletes_refused": (_compensation_blocked, "profile_verify", "email_mismatch"),
    "compensation_profile_delete_refused": (
        _profile_delete_refused,
        "profile_verify",
        "email_mismatch",
    ),
}
HELD_STEPS = ("identity_create", "profile_insert", "complete")
INJECTIONS = ("pg_terminate_backend", "database_stopped", "worker_sigkill")


@dataclass
class Attempt:
    email: str
    kind: str  # "clean", a PLAIN kind, "<injection>@<step>", or "during_outage"
    key: str | None
    fields: dict[str, Any]
    reply: Reply | None = None
    no_answer: bool = False
    held_step: str | None = None

    @property
    def status(self) -> int | None:
        return None if self.reply is None else self.reply.status

    def describe(self) -> str:
        body = self.reply.body if self.reply else "no answer"
        return f"{self.kind} {self.email}: {self.status} {body}"


@dataclass
class Run:
    layout: Layout
    service: Gunicorn
    rng: random.Random
    attempts: list[Attempt] = field(default_factory=list)
    faults: Counter = field(default_factory=Counter)
    n: int = 0

    def new(self, kind: str, count: int) -> list[Attempt]:
        out = []
        for _ in range(count):
            self.n += 1
            fields: dict[str, Any] = {}
            if self.rng.random() < 0.3:
                fields["username"] = f"u{self.n}_{self.rng.randrange(10**6)}"
            if self.rng.random() < 0.3:
                fields["display_name"] = f"User {self.n}"
            key = f"chaos-{self.layout.name}-{self.n}" if self.rng.random() < 0.3 else None
            out.append(Attempt(unique_email(f"c{self.n}"), kind, key, fields))
        self.attempts.extend(out)
        return out

    def fire(self, attempt: Attempt) -> Attempt:
        try:
            attempt.reply = self.service.signup(attempt.email, key=attempt.key, **attempt.fields)
        except NoAnswer:
            attempt.no_answer = True
        return attempt

    def fire_all(self, attempts: list[Attempt]) -> None:
        with ThreadPoolExecutor(THREADS) as pool:
            list(pool.map(self.fire, attempts))

    # -- rounds ----------------------------------------------------------------------------

    def clean(self) -> None:
        batch = self.new("clean", CLEAN_BATCH)
        self.fire_all(batch)
        for a in batch:
            assert a.status == 201, a.describe()

    def plain(self, kind: str) -> None:
        make, step, reason = PLAIN[kind]
        batch = self.new(kind, FAULT_BATCH)
        with make(self.layout):
            self.fire_all(batch)
        self.faults[kind] += len(batch)
        for a in batch:
            assert a.status == 500 and a.reply.code == SignupFailed.code, a.describe()
            details = a.reply.error["details"]
            assert (details["step"], details["reason"]) == (step, reason), a.describe()
            if kind.startswith("compensation_"):
                assert details["compensated"] is (not self.layout.split), a.describe()
        self.cannot_log_in(batch)

    def held(self, injection: str, step: str) -> None:
        kind = f"{injection}@{step}"
        batch = self.new(kind, HELD)
        for a in batch:
            a.held_step = step
        # Split layout: the database holding the gate, or (at random) both.
        both = self.layout.split and self.rng.random() < 0.5
        with Gate(self.layout, step) as gate, ThreadPoolExecutor(HELD + 2) as pool:
            futures = [pool.submit(self.fire, a) for a in batch]
            held = gate.wait_held(HELD)
            if injection == "pg_terminate_backend":
                for url in {self.layout.app_url, self.layout.auth_url} if both else {gate.url}:
                    faults.terminate_service_backends(url)
                done = [f.result() for f in futures]
            elif injection == "database_stopped":
                servers = self.layout.servers() if both else [gate.server]
                for server in servers:
                    stop_server(server)
                try:
                    during = self.new("during_outage", 2)
                    futures += [pool.submit(self.fire, a) for a in during]
                    done = [f.result() for f in futures]
                finally:
                    for server in servers:
                        start_server(server)
            else:
                owners = workers_holding(self.service, held)
                victim = max(owners, key=lambda pid: owners[pid])
                self.service.kill_worker(victim)
                gate.release()
                done = [f.result() for f in futures]
                assert sum(a.no_answer for a in done) == owners[victim], [
                    a.describe() for a in done
                ]
        self.faults[injection] += len(batch)
        for a in done:
            if a.kind == "during_outage":
                assert a.status == 503 and a.reply.code == DatabaseUnavailable.code, a.describe()
            elif injection == "worker_sigkill":
                assert a.no_answer or a.status == 201, a.describe()
            elif a.status == 500:
                assert a.reply.code == SignupFailed.code, a.describe()
                assert a.reply.error["details"]["step"] == step, a.describe()
                assert a.reply.error["details"]["reason"] == "connection_lost", a.describe()
            else:
                assert a.status == 503 and a.reply.code == DatabaseUnavailable.code, a.describe()
        if injection == "worker_sigkill":
            self.service.wait_ready()
        # What did not get a 201 is not an account, now (before any reconcile) either; the one
        # exception: a killed signup whose final UPDATE landed after its client was gone.
        lost_after_complete = self.layout.split and step == "complete"
        self.cannot_log_in(
            [a for a in done if a.status != 201 and not (a.no_answer and lost_after_complete)]
        )

    def cannot_log_in(self, attempts: list[Attempt]) -> None:
        for a in attempts:
            reply = self.service.login(a.email)
            assert reply.status == 401, f"half a user logged in: {a.describe()} -> {reply.body}"


def _schedule(rng: random.Random) -> list[tuple[str, ...]]:
    """Every fault kind twice and every injection twice at every held step, each after a
    clean round, padded with clean rounds to at least MIN_SIGNUPS signups."""
    faulty: list[tuple[str, ...]] = [("plain", k) for k in PLAIN for _ in range(2)]
    faulty += [("held", i, s) for i in INJECTIONS for s in HELD_STEPS for _ in range(2)]
    rng.shuffle(faulty)
    expected = sum(FAULT_BATCH if r[0] == "plain" else HELD for r in faulty)
    cleans = max(len(faulty), -(-(MIN_SIGNUPS - expected) // CLEAN_BATCH))
    after = set(rng.sample(range(cleans), len(faulty)))
    out: list[tuple[str, ...]] = []
    it = iter(faulty)
    for i in range(cleans):
        out.append(("clean",))
        if i in after:
            out.append(next(it))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("which", ["one", "split"])
def test_randomized_signups_under_faults_never_leave_half_a_user(
    outage_layouts, services, state_dir, which, chaos_seed
):
    layout = outage_layouts[which]
    for server in layout.servers():
        start_server(server)
    layout.truncate()
    service = services.get(layout, name="chaos", extra_env={"AUTHSVC_DB_POOL_TIMEOUT": "2"})
    chaos(layout, service, state_dir, _schedule, chaos_seed)


def chaos(
    layout: Layout,
    service: Gunicorn,
    state_dir: Any,
    schedule: Callable[[random.Random], list[tuple[str, ...]]],
    seed: int,
    cli_env: dict[str, str] | None = None,
) -> None:
    """Signups along `schedule` (drawn with `seed`), then `authsvc reconcile --repair` (with
    `cli_env` over the layout's settings), then the guarantee checked with plain SQL and real
    logins; the counts go to the run's report."""
    rng = random.Random(seed)
    run = Run(layout, service, rng)
    started = time.monotonic()
    for i, spec in enumerate(schedule(rng)):
        try:
            if spec[0] == "clean":
                run.clean()
            elif spec[0] == "plain":
                run.plain(spec[1])
            else:
                run.held(spec[1], spec[2])
        except AssertionError as exc:
            raise AssertionError(
                f"seed {seed}, round {i} {spec}: {exc}\n{service.log_tail()}"
            ) from exc
    traffic = time.monotonic() - started

    before = layout.drift()
    found = reconcile(layout, "--json", data_dir=state_dir, extra_env=cli_env)
    assert found.code == (1 if any(before.values()) else 0), found
    assert found.json["identities_without_profile"]["count"] == before["identities_without_profile"]
    assert found.json["profiles_without_identity"]["count"] == before["profiles_without_identity"]
    repair_started = time.monotonic()
    repaired = reconcile(layout, "--repair", "--json", data_dir=state_dir, extra_env=cli_env)
    repair_seconds = time.monotonic() - repair_started
    assert repaired.code == 0, repaired
    after = layout.drift()
    assert after == {
        "identities_without_profile": 0,
        "profiles_without_identity": 0,
        "pending_identities": 0,
    }, after

    # Per signup: 201 -> a whole user who can log in; anything else -> no trace (or, killed
    # after its last statement was sent, a whole user).
    identities = layout.identities()
    profiles = layout.profiles()
    accounts: list[Attempt] = []
    for a in run.attempts:
        identity = identities.get(a.email.lower())
        if a.status == 201:
            assert identity and identity["signup_state"] == "complete", a.describe()
            assert str(identity["id"]) == a.reply.user_id and identity["id"] in profiles
            accounts.append(a)
        elif a.no_answer and identity is not None:
            assert layout.split and a.held_step == "complete", a.describe()
            assert identity["signup_state"] == "complete" and identity["id"] in profiles
            accounts.append(a)
        else:
            assert identity is None, f"a failed signup left its identity: {a.describe()}"
            assert layout.trace(a.email) == (None, None), a.describe()
    assert len(identities) == len(profiles) == len(accounts)

    with ThreadPoolExecutor(THREADS) as pool:
        logins = list(pool.map(lambda a: (a, service.login(a.email)), accounts))
    for a, reply in logins:
        assert reply.status == 200, f"{a.describe()} cannot log in: {reply.body}"
        assert reply.user_id == str(identities[a.email.lower()]["id"])
    replays = [a for a in accounts if a.key and a.status == 201][:25]
    for a in replays:
        again = service.signup(a.email, key=a.key, **a.fields)
        assert again.status == 201 and again.user_id == a.reply.user_id, again.body

    outcomes = Counter(
        "no answer (worker killed)"
        if a.no_answer
        else f"{a.status} {a.reply.code or ''}".strip()
        + (f" at {a.reply.error['details']['step']}" if a.reply.code == SignupFailed.code else "")
        for a in run.attempts
    )
    report(
        f"randomized[{layout.name}] seed {seed}: {len(run.attempts)} signups tried in "
        f"{traffic:.0f} s, {len(accounts)} accounts; all {len(accounts)} logged in; "
        f"{len(replays)} idempotent replays"
    )
    report(
        "  faults injected (signups under each): "
        + ", ".join(f"{k}={v}" for k, v in sorted(run.faults.items()))
    )
    report("  outcomes: " + ", ".join(f"{k}: {v}" for k, v in sorted(outcomes.items())))
    report(
        f"  orphans before repair: identities without profile "
        f"{before['identities_without_profile']}, profiles without identity "
        f"{before['profiles_without_identity']}, pending identities "
        f"{before['pending_identities']}; "
        f"after `authsvc reconcile --repair` ({repair_seconds:.1f} s, exit "
        f"{repaired.code}, repaired {repaired.json['repaired']}): "
        f"{after['identities_without_profile']}, {after['profiles_without_identity']}, "
        f"{after['pending_identities']}"
    )
