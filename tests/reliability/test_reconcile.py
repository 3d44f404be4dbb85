"""`authsvc reconcile [--repair] [--json]` and `authsvc doctor`, run as real subprocesses, on
drift manufactured with plain SQL: in one database (a scratch copy without the profile's
foreign key) and across two."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from authsvc.passwords import Hasher
from tests import faults
from tests.conftest import PASSWORD, migrate
from tests.reliability.support import Layout, cli, reconcile, report
from tests.service import free_port

OLD = "1 hour"  # well past the default grace period of 300 s
HASH = Hasher(1, 8, 1).hash(PASSWORD)


@pytest.fixture(scope="module")
def scratch_url(pg) -> str:
    """One database whose profiles lost their foreign key, so a profile can outlive its
    identity the way it can across two databases."""
    url = pg.create_database("authsvc_scratch")
    migrate(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ALTER TABLE public.users DROP CONSTRAINT users_id_fkey")
    return url


@pytest.fixture(params=["one", "split"])
def drift_layout(request, pg, scratch_url, split_owner_urls, split_urls) -> Iterator[Layout]:
    if request.param == "one":
        service_url = pg.service_url(scratch_url)
        layout = Layout("one", scratch_url, scratch_url, service_url, service_url)
    else:
        layout = Layout("split", *split_owner_urls, *split_urls)
    layout.truncate()
    yield layout
    layout.truncate()


def add_identity(
    layout: Layout, email: str, state: str, age: str = OLD, meta: dict | None = None
) -> str:
    user_id = str(uuid.uuid4())
    with psycopg.connect(layout.auth_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO auth.users (id, email, password_hash, signup_state, raw_user_meta_data, "
            "created_at) VALUES (%s, %s, %s, %s, %s, now() - %s::interval)",
            (user_id, email, HASH, state, json.dumps(meta or {}), age),
        )
    return user_id


def add_profile(
    layout: Layout, user_id: str, email: str, age: str = OLD, username: str | None = None
) -> None:
    with psycopg.connect(layout.app_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO public.users (id, email, username, created_at) "
            "VALUES (%s, %s, %s, now() - %s::interval)",
            (user_id, email, username, age),
        )


def _ids(section: dict) -> set[str]:
    return set(section["ids"])


def test_reconcile_on_a_clean_database_exits_0_with_the_documented_json(drift_layout, tmp_path):
    result = reconcile(drift_layout, "--json", data_dir=tmp_path, grace=None)
    assert result.code == 0, result
    body = result.json
    assert {
        "identities_without_profile",
        "profiles_without_identity",
        "repaired",
        "grace_seconds",
        "elapsed_ms",
    } <= set(body)
    assert body["identities_without_profile"] == {"count": 0, "ids": []}
    assert body["profiles_without_identity"] == {"count": 0, "ids": []}
    assert body["repaired"] == {}
    assert body["grace_seconds"] == 300
    assert isinstance(body["elapsed_ms"], int | float)


def test_reconcile_finds_drift_both_ways_and_repair_settles_it(drift_layout, tmp_path):
    lay = drift_layout
    acknowledged = add_identity(
        lay,
        "acked@example.com",
        "complete",
        meta={"username": "restored", "display_name": "Restored"},
    )
    abandoned = add_identity(lay, "abandoned@example.com", "pending")
    unfinished = add_identity(lay, "unfinished@example.com", "pending")
    add_profile(lay, unfinished, "unfinished@example.com")
    orphan = str(uuid.uuid4())
    add_profile(lay, orphan, "orphan@example.com")
    in_flight = add_identity(lay, "inflight@example.com", "pending", age="1 second")
    young_orphan = str(uuid.uuid4())
    add_profile(lay, young_orphan, "young@example.com", age="1 second")
    whole = add_identity(lay, "whole@example.com", "complete")
    add_profile(lay, whole, "whole@example.com")

    found = reconcile(lay, "--json", data_dir=tmp_path, grace=None)
    assert found.code == 1, found
    body = found.json
    assert body["identities_without_profile"]["count"] == 2
    assert _ids(body["identities_without_profile"]) == {acknowledged, abandoned}
    assert body["profiles_without_identity"] == {"count": 1, "ids": [orphan]}
    assert body["unfinished_signups"] == {"count": 1, "ids": [unfinished]}

    text = reconcile(lay, data_dir=tmp_path, grace=None)
    assert text.code == 1
    assert "identities_without_profile: 2" in text.stdout
    assert "authsvc reconcile --repair" in text.stdout

    repaired = reconcile(lay, "--repair", "--json", data_dir=tmp_path, grace=None)
    assert repaired.code == 0, repaired
    assert repaired.json["repaired"] == {
        "profiles_created": 1,
        "identities_removed": 2,
        "profiles_removed": 2,  # the orphan, and the unfinished signup's with its identity
    }
    assert repaired.json["remaining"] == 0
    identities = {str(r["id"]): r for r in lay.identities().values()}
    profiles = {str(k): v for k, v in lay.profiles().items()}
    # The acknowledged account got its profile back, with its username.
    assert acknowledged in identities and acknowledged in profiles
    restored = lay.rows(
        lay.app_url,
        "SELECT username, display_name FROM public.users WHERE id = %s",
        (acknowledged,),
    )
    assert restored == [{"username": "restored", "display_name": "Restored"}]
    # What was never acknowledged is gone, profile and all.
    for gone in (abandoned, unfinished):
        assert gone not in identities and gone not in profiles
    assert orphan not in profiles
    # In-flight rows and whole users are left alone.
    assert in_flight in identities and young_orphan in profiles
    assert whole in identities and whole in profiles

    again = reconcile(lay, "--json", data_dir=tmp_path, grace=None)
    assert again.code == 0 and again.json["identities_without_profile"]["count"] == 0


def test_repair_gives_a_profile_back_even_when_the_metadata_is_not_an_object(
    drift_layout, tmp_path
):
    lay = drift_layout
    user_id = add_identity(lay, "odd@example.com", "complete")
    with psycopg.connect(lay.auth_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE auth.users SET raw_user_meta_data = '\"odd\"' WHERE id = %s", (user_id,)
        )
    repaired = reconcile(lay, "--repair", "--json", data_dir=tmp_path, grace=None)
    assert repaired.code == 0, repaired
    assert repaired.json["repaired"]["profiles_created"] == 1
    assert uuid.UUID(user_id) in lay.profiles()


def test_ids_are_capped_at_1000_while_counts_stay_exact(drift_layout, tmp_path):
    lay = drift_layout
    with psycopg.connect(lay.auth_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO auth.users (id, email, signup_state, created_at) "
            "SELECT gen_random_uuid(), 'cap-' || i || '@example.com', 'pending', "
            "now() - interval '1 hour' FROM generate_series(1, 1500) i"
        )
    with psycopg.connect(lay.app_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO public.users (id, email, created_at) "
            "SELECT gen_random_uuid(), 'lost-' || i || '@example.com', "
            "now() - interval '1 hour' FROM generate_series(1, 1200) i"
        )
    found = reconcile(lay, "--json", data_dir=tmp_path, grace=None)
    assert found.code == 1, found
    body = found.json
    assert body["identities_without_profile"]["count"] == 1500
    assert len(_ids(body["identities_without_profile"])) == 1000
    assert body["profiles_without_identity"]["count"] == 1200
    assert len(_ids(body["profiles_without_identity"])) == 1000
    known = {str(r["id"]) for r in lay.identities().values()}
    assert _ids(body["identities_without_profile"]) <= known

    repaired = reconcile(lay, "--repair", "--json", data_dir=tmp_path, grace=None)
    assert repaired.code == 0, repaired
    assert repaired.json["repaired"]["identities_removed"] == 1500
    assert repaired.json["repaired"]["profiles_removed"] == 1200
    assert lay.drift() == {
        "identities_without_profile": 0,
        "profiles_without_identity": 0,
        "pending_identities": 0,
    }
    report(
        f"reconcile[{lay.name}]: 1500 identities + 1200 profiles adrift, ids capped at 1000; "
        f"scan {body['elapsed_ms']} ms, repair {repaired.json['elapsed_ms']} ms"
    )


def test_reconcile_counts_exactly_across_many_scan_batches(drift_layout, tmp_path):
    """25,000 whole users (more than two batches of the cross-database scan) with drift
    scattered among them: every drifted row is found, no whole user is."""
    lay = drift_layout
    with psycopg.connect(lay.auth_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO auth.users (id, email, signup_state, created_at) "
            "SELECT gen_random_uuid(), 'whole-' || i || '@example.com', 'complete', "
            "now() - interval '1 hour' FROM generate_series(1, 25000) i"
        )
        whole = conn.execute("SELECT id, email FROM auth.users").fetchall()
    with psycopg.connect(lay.app_url, autocommit=True) as conn:
        with conn.cursor().copy("COPY public.users (id, email) FROM STDIN") as copy:
            for row in whole:
                copy.write_row(row)
    lonely = {add_identity(lay, f"lonely-{i}@example.com", "complete") for i in range(30)}
    orphans = {str(uuid.uuid4()) for _ in range(30)}
    for i, orphan in enumerate(orphans):
        add_profile(lay, orphan, f"orphan-{i}@example.com")
    found = reconcile(lay, "--json", data_dir=tmp_path, grace=None)
    assert found.code == 1, found
    assert found.json["identities_without_profile"]["count"] == 30
    assert _ids(found.json["identities_without_profile"]) == lonely
    assert found.json["profiles_without_identity"]["count"] == 30
    assert _ids(found.json["profiles_without_identity"]) == orphans
    report(
        f"reconcile[{lay.name}]: 25,060 identities / 25,030 profiles scanned in "
        f"{found.json['elapsed_ms']} ms, drift found exactly (30 + 30)"
    )


def test_reconcile_exits_1_when_drift_remains_after_repair(drift_layout, tmp_path):
    lay = drift_layout
    stuck = add_identity(lay, "stuck@example.com", "complete")
    add_identity(lay, "abandoned@example.com", "pending")
    with faults.not_valid_check(lay.app_url):  # the profile cannot be given back
        result = reconcile(lay, "--repair", "--json", data_dir=tmp_path, grace=None)
    assert result.code == 1, result
    body = result.json
    assert body["repaired"]["identities_removed"] == 1  # the other rows were still repaired
    assert body["repaired"]["profiles_created"] == 0
    assert body["remaining"] == 1
    assert {str(r["id"]) for r in lay.identities().values()} == {stuck}


def test_reconcile_exits_2_when_it_cannot_run(pg, tmp_path):
    closed = f"postgresql://authsvc:x@127.0.0.1:{free_port()}/authsvc"
    started = time.monotonic()
    down = cli(
        {"DATABASE_URL": closed},
        "reconcile",
        "--json",
        data_dir=tmp_path,
        extra_env={"AUTHSVC_DB_POOL_TIMEOUT": "2"},
    )
    elapsed = time.monotonic() - started
    assert down.code == 2, down
    assert "error" in json.loads(down.stdout)
    assert "reconcile could not run" in down.stderr
    unmigrated = pg.create_database("authsvc_unmigrated")
    empty = cli({"DATABASE_URL": unmigrated}, "reconcile", "--repair", "--json", data_dir=tmp_path)
    assert empty.code == 2, empty
    assert "error" in json.loads(empty.stdout)
    report(
        f"reconcile with no database listening: exit 2 after {elapsed:.1f} s "
        "(AUTHSVC_DB_POOL_TIMEOUT=2)"
    )


def test_doctor_reports_the_drift_counts(drift_layout, tmp_path):
    lay = drift_layout
    add_identity(lay, "abandoned@example.com", "pending")
    add_profile(lay, str(uuid.uuid4()), "orphan@example.com")
    sick = cli(lay.env(), "doctor", data_dir=tmp_path)
    assert sick.code == 1, sick
    line = next(x for x in sick.stdout.splitlines() if " drift:" in x)
    assert line.startswith("FAIL")
    assert "identities without profile: 1" in line
    assert "profiles without identity: 1" in line
    assert "authsvc reconcile --repair" in line
    assert reconcile(lay, "--repair", data_dir=tmp_path, grace=None).code == 0
    healthy = cli(lay.env(), "doctor", data_dir=tmp_path)
    line = next(x for x in healthy.stdout.splitlines() if " drift:" in x)
    assert line.startswith("ok") and "identities without profile: 0" in line
    assert healthy.code == 0, healthy.stdout
