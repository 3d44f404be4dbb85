"""The audit log: what a journey records, that it holds no secret, that the service's role can
only append to it, and that recording never fails what it records."""

from __future__ import annotations

import hashlib
import logging
import re

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from authsvc.config import load_settings
from authsvc.errors import RefreshTokenReused, SignupFailed
from authsvc.services import audit, reconcile
from authsvc.stores import NewProfile
from tests import faults
from tests.admin_support import bearer
from tests.conftest import PASSWORD, AuthActions

HEADERS = {"User-Agent": "audit-test/1.0", "X-Request-ID": "journey-1"}


def test_a_journey_is_recorded_with_who_from_where_and_nothing_secret(deployment):
    client = deployment.client
    signup = client.post(
        "/api/v1/auth/signup",
        headers=HEADERS,
        json={"email": "ada@example.com", "password": PASSWORD},
    ).get_json()
    user_id = signup["data"]["user"]["id"]
    secrets_seen = [
        PASSWORD,
        signup["data"]["session"]["access_token"],
        signup["data"]["session"]["refresh_token"],
    ]
    wrong = "a wrong password for ada"
    client.post("/api/v1/auth/login", json={"email": "ada@example.com", "password": wrong})
    login = deployment.auth.login("ada@example.com")["data"]["session"]
    refresh = login["refresh_token"]
    rotated = client.post("/api/v1/auth/refresh", json={"refresh_token": refresh}).get_json()
    # Past the reuse interval, the spent token presented again is theft.
    deployment.sql(
        deployment.identity_owner_url,
        "UPDATE authsvc.refresh_tokens SET used_at = used_at - interval '1 minute' "
        "WHERE used_at IS NOT NULL",
    )
    reused = client.post("/api/v1/auth/refresh", json={"refresh_token": refresh})
    assert reused.get_json()["error"]["code"] == RefreshTokenReused.code
    last = deployment.auth.login("ada@example.com")["data"]["session"]
    client.post(
        "/api/v1/auth/logout", json={"scope": "global"}, headers=bearer(last["access_token"])
    )
    final = deployment.auth.login("ada@example.com")["data"]["session"]
    client.delete(
        "/api/v1/auth/me", json={"password": PASSWORD}, headers=bearer(final["access_token"])
    )
    secrets_seen += [
        wrong,
        login["access_token"],
        refresh,
        last["access_token"],
        last["refresh_token"],
        rotated["data"]["session"]["refresh_token"],
        final["access_token"],
        final["refresh_token"],
    ]

    events = deployment.events()
    assert [e["type"] for e in events] == [
        "signup",
        "login_failed",
        "login",
        "refresh_reused",
        "login",
        "logout",
        "login",
        "user_deleted",
    ]
    first = events[0]
    assert (first["request_id"], first["ip"], first["user_agent"]) == (
        "journey-1",
        "127.0.0.1",
        "audit-test/1.0",
    )
    assert all(e["request_id"] and e["ip"] == "127.0.0.1" for e in events)
    assert all(str(e["user_id"]) == user_id for e in events if e["type"] != "login_failed")
    assert events[5]["details"] == {"scope": "global"}
    assert events[1]["details"] == {"reason": "invalid_credentials"}

    # Never a password, a token or a hash: not as given, not hashed the way we store them.
    dumped = "\n".join(
        str(row)
        for row in deployment.sql(
            deployment.identity_owner_url, "SELECT * FROM authsvc.audit_events"
        )
    )
    for secret in secrets_seen:
        assert secret not in dumped
        assert hashlib.sha256(secret.encode()).hexdigest() not in dumped
    assert "$argon2" not in dumped and not re.search(r"eyJ[\w-]+\.", dumped)


def test_a_failed_signup_is_recorded_with_its_step_and_compensation(deployment):
    with faults.profile_insert_raises(deployment.profile_owner_url):
        failed = deployment.auth.signup("victim@example.com", expect=500)
    assert failed["error"]["code"] == SignupFailed.code
    (event,) = deployment.events("signup_failed")
    assert event["user_id"] is None
    assert event["details"] == {
        "step": "profile_insert",
        "reason": "trigger_raised",
        "compensated": True,
    }


def test_a_replayed_signup_is_not_recorded_twice(deployment):
    headers = {"Idempotency-Key": "once"}
    deployment.auth.signup("once@example.com", headers=headers)
    deployment.auth.signup("once@example.com", headers=headers)
    assert len(deployment.events("signup")) == 1


def test_the_services_role_can_append_and_read_but_never_change_or_remove(deployment, service_role):
    deployment.signup("kept@example.com")
    service_url = deployment.service_urls[1]  # the identity database, as the service
    with psycopg.connect(service_url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM authsvc.audit_events").fetchone()[0] == 1
        conn.execute("INSERT INTO authsvc.audit_events (type) VALUES ('logout')")
        for statement in (
            "UPDATE authsvc.audit_events SET type = 'login'",
            "DELETE FROM authsvc.audit_events",
            "TRUNCATE authsvc.audit_events",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            conn.execute("SELECT authsvc.purge_audit_events(0)")  # not even through the purge
        assert conn.execute("SELECT authsvc.purge_audit_events(1)").fetchone()[0] == 0
    assert len(deployment.events()) == 2


def test_even_the_owner_cannot_rewrite_history_outside_the_purge(deployment):
    deployment.signup("kept@example.com")
    with psycopg.connect(deployment.identity_owner_url, autocommit=True) as conn:
        for statement in (
            "UPDATE authsvc.audit_events SET user_id = NULL",
            "DELETE FROM authsvc.audit_events",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                conn.execute(statement)
    assert len(deployment.events("signup")) == 1


def test_the_purge_keeps_the_retention_and_counts_what_went(deployment, tmp_path):
    deployment.signup("recent@example.com")
    deployment.sql(
        deployment.identity_owner_url,
        "INSERT INTO authsvc.audit_events (type, at) VALUES "
        "('login', now() - interval '400 days'), ('login', now() - interval '40 days')",
    )
    settings = load_settings(deployment.settings(AUTHSVC_AUDIT_RETENTION_DAYS="30"))
    assert settings.audit_retention_days == 30
    assert audit.purge_expired(deployment.stores, settings) == {"audit_events": 2}
    assert [e["type"] for e in deployment.events()] == ["signup"]
    default = load_settings(deployment.settings())
    assert default.audit_retention_days == 365
    assert audit.purge_expired(deployment.stores, default) == {"audit_events": 0}


def test_an_audit_log_that_refuses_writes_fails_nothing_and_is_counted(deployment):
    app = deployment.build(AUTHSVC_METRICS="on")
    auth = AuthActions(app.test_client())
    before = audit.failed_writes()
    audit.FAILED_WRITES.take_unreported()  # failures of earlier tests' apps in this process
    with faults.trigger(
        deployment.identity_owner_url, "authsvc.audit_events", "RAISE EXCEPTION 'audit log down';"
    ):
        auth.signup("still@example.com")
        auth.login("still@example.com")
        auth.login("still@example.com", "wrong password here", expect=401)
    assert audit.failed_writes() - before == 3
    assert deployment.events() == []
    metrics = app.test_client().get("/metrics").get_data(as_text=True)
    (family,) = [
        f
        for f in text_string_to_metric_families(metrics)
        if f.name == "authsvc_audit_write_failures"
    ]
    assert [s.value for s in family.samples if s.name.endswith("_total")] == [3.0]
    auth.login("still@example.com")  # and once the log is back, it records again
    assert [e["type"] for e in deployment.events()] == ["login"]


def test_a_reconcile_repair_is_recorded(deployment):
    from uuid import uuid4

    stores = deployment.stores
    pending = uuid4()
    stores.identities.create(pending, "half@example.com", "$argon2id$x", {})
    stores.profiles.insert(NewProfile(pending, "half@example.com"))
    report, remaining = reconcile.run(stores, 0, repair_drift=True)
    assert not remaining and report["repaired"]["identities_removed"] == 1
    (event,) = deployment.events("reconcile_repair")
    assert event["actor"] == "cli" and event["user_id"] is None
    assert event["details"]["identities_removed"] == 1 and event["details"]["remaining"] == 0


def test_a_repair_counts_the_profiles_removed_with_their_pending_identities(deployment):
    # A signup that died after both inserts, an hour ago: pending identity, profile. In one
    # database the profile goes by ON DELETE CASCADE, across two by a delete; both count it.
    from uuid import uuid4

    user_id = str(uuid4())
    deployment.sql(
        deployment.identity_owner_url,
        "INSERT INTO auth.users (id, email, password_hash, signup_state, created_at) "
        "VALUES (%s, 'half@example.com', 'x', 'pending', now() - interval '1 hour')",
        (user_id,),
    )
    deployment.sql(
        deployment.profile_owner_url,
        "INSERT INTO public.users (id, email, created_at) "
        "VALUES (%s, 'half@example.com', now() - interval '1 hour')",
        (user_id,),
    )
    # A handler of its own on the logger: each record once, whatever other tests did to the
    # propagation of "authsvc" (pytest's caplog handler sits on the root logger too).
    logged: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = logged.append  # type: ignore[method-assign]
    logger = logging.getLogger("authsvc.reconcile")
    logger.addHandler(handler)
    try:
        report, remaining = reconcile.run(deployment.stores, 300, repair_drift=True)
    finally:
        logger.removeHandler(handler)
    assert not remaining and deployment.identity(user_id) is None
    assert deployment.profile(user_id) is None
    assert report["repaired"] == {
        "profiles_created": 0,
        "identities_removed": 1,
        "profiles_removed": 1,
    }
    (line,) = [r for r in logged if r.getMessage().startswith("reconcile removed id")]
    assert line.profiles_deleted_with_them == 1
    (event,) = deployment.events("reconcile_repair")
    assert event["details"]["profiles_removed"] == 1


def test_details_that_look_secret_are_dropped_and_values_kept_plain(deployment):
    assert audit.record(
        deployment.stores,
        audit.SYSTEM,
        "login",
        None,
        password="hunter2",
        refresh_token="abc",
        api_key="k",
        password_hash="$argon2id$",
        scope="local",
        many=list(range(50)),
        note="x" * 500,
    )
    (event,) = deployment.events()
    assert event["details"] == {"scope": "local", "many": list(range(20)), "note": "x" * 200}
    assert audit.record(deployment.stores, audit.SYSTEM, "Not A Type") is False


def test_password_changes_and_upgrades_are_recorded(deployment):
    client = deployment.client
    token = client.post(
        "/api/v1/auth/signup", json={"email": "pat@example.com", "password": PASSWORD}
    ).get_json()["data"]["session"]["access_token"]
    changed = client.post(
        "/api/v1/auth/password",
        headers=bearer(token),
        json={"current_password": PASSWORD, "password": "another long passphrase"},
    )
    assert changed.status_code == 200, changed.get_json()
    guest = client.post("/api/v1/auth/anonymous", json={}).get_json()["data"]
    upgraded = client.post(
        "/api/v1/auth/upgrade",
        headers=bearer(guest["session"]["access_token"]),
        json={"email": "guest@example.com", "password": PASSWORD},
    )
    assert upgraded.status_code == 200, upgraded.get_json()
    types = [e["type"] for e in deployment.events()]
    assert types == ["signup", "password_changed", "signup", "user_upgraded"], types
    assert str(deployment.events("user_upgraded")[0]["user_id"]) == guest["user"]["id"]
