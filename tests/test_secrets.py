"""Secrets: rotating JWT_SECRET_KEY with AUTHSVC_PREVIOUS_SECRET_KEYS (tokens, cookies and
idempotent retries keep working), owner-only files from their creation, passwords redacted from
every form of connection string, and row values of database errors kept out of the logs."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import jwt
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from authsvc import create_app, embedded
from authsvc.config import ConfigError, load_settings, redact_url
from authsvc.errors import (
    IdempotencyKeyReused,
    SignupFailed,
    TokenInvalid,
)
from authsvc.observability import scrub
from authsvc.pages.browser import COOKIE_NAME, SessionCookie
from authsvc.tokens import key_id
from tests.conftest import PASSWORD, TEST_SECRET, AuthActions, app_overrides, count
from tests.test_cli import run as run_cli
from tests.test_pages import Pages

OLD = TEST_SECRET
NEW = "rotated-signing-key-0f1e2d3c4b5a69788796a5b4c3d2e1f0-long-enough"
STRONG = "q8Zr-4vLk_T1pXe9WmB2nYc7HsJ0dGf3AuK6oPiR5tEw"
STRONG_TOO = "Vb3n-Q7wXz_K1mLp9RtY5uIo2EaSd4FgH6jCk8NhT0ey"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def make_app(database_url: str, tmp_path: Path):
    """Apps on the one test database, each with its own keys (instances before and after a
    rotation)."""
    apps: list[Any] = []

    def make(secret: str, previous: str = "") -> Any:
        app = create_app(
            app_overrides(
                database_url, tmp_path, JWT_SECRET_KEY=secret, AUTHSVC_PREVIOUS_SECRET_KEYS=previous
            )
        )
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["authsvc"].stores.close()


# -- access tokens ------------------------------------------------------------------------------


def test_a_token_signed_before_a_rotation_still_works_and_new_ones_use_the_new_key(make_app):
    old = make_app(OLD)
    token = AuthActions(old.test_client()).signup()["data"]["session"]["access_token"]
    rotated = make_app(NEW, previous=OLD)
    client = rotated.test_client()
    assert client.get("/api/v1/auth/me", headers=bearer(token)).status_code == 200

    fresh = AuthActions(client).login()["data"]["session"]["access_token"]
    assert jwt.get_unverified_header(fresh)["kid"] == key_id(NEW) != key_id(OLD)
    assert jwt.decode(fresh, NEW, algorithms=["HS256"], audience="authsvc")["sub"]
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(fresh, OLD, algorithms=["HS256"], audience="authsvc")


def test_without_the_previous_key_a_token_of_the_old_key_is_refused(make_app):
    old = make_app(OLD)
    token = AuthActions(old.test_client()).signup()["data"]["session"]["access_token"]
    response = make_app(NEW).test_client().get("/api/v1/auth/me", headers=bearer(token))
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == TokenInvalid.code


def test_the_key_id_is_a_short_hash_of_the_key_never_the_key(make_app):
    token = AuthActions(make_app(NEW).test_client()).signup()["data"]["session"]["access_token"]
    kid = jwt.get_unverified_header(token)["kid"]
    assert len(kid) == 16 and int(kid, 16) >= 0
    assert kid not in NEW and NEW[:8] not in json.dumps(jwt.get_unverified_header(token))


def _claims(app: Any, secret: str) -> dict[str, Any]:
    token = AuthActions(app.test_client()).signup()["data"]["session"]["access_token"]
    return jwt.decode(token, secret, algorithms=["HS256"], audience="authsvc")


def test_a_token_without_a_key_id_is_checked_against_the_current_key_only(make_app):
    rotated = make_app(NEW, previous=OLD)
    claims = _claims(rotated, NEW)
    client = rotated.test_client()
    unnamed = jwt.encode(claims, NEW, algorithm="HS256")  # as tokens were before key ids
    assert "kid" not in jwt.get_unverified_header(unnamed)
    assert client.get("/api/v1/auth/me", headers=bearer(unnamed)).status_code == 200
    unnamed_old = jwt.encode(claims, OLD, algorithm="HS256")
    assert client.get("/api/v1/auth/me", headers=bearer(unnamed_old)).status_code == 401


def test_a_token_naming_a_key_the_service_does_not_hold_is_refused(make_app):
    rotated = make_app(NEW, previous=OLD)
    claims = _claims(rotated, NEW)
    stranger = "an-attackers-own-key-5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b"
    forged = jwt.encode(claims, stranger, algorithm="HS256", headers={"kid": key_id(stranger)})
    response = rotated.test_client().get("/api/v1/auth/me", headers=bearer(forged))
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == TokenInvalid.code
    # Naming a key we hold does not help a token signed with another one.
    misnamed = jwt.encode(claims, stranger, algorithm="HS256", headers={"kid": key_id(OLD)})
    assert rotated.test_client().get("/api/v1/auth/me", headers=bearer(misnamed)).status_code == 401


# -- the hosted pages' cookie -------------------------------------------------------------------


def test_a_browser_session_from_before_a_rotation_stays_signed_in_and_is_signed_anew(
    make_app, tmp_path
):
    old = Pages(make_app(OLD).test_client())
    assert old.signup().status_code == 303
    before = old.cookie()

    rotated = make_app(NEW, previous=OLD).test_client()
    rotated.set_cookie(COOKIE_NAME, before)
    page = rotated.get("/account")
    assert page.status_code == 200 and "alice@example.com" in page.text
    after = rotated.get_cookie(COOKIE_NAME).value
    assert after != before

    current_only = SessionCookie(
        load_settings({"JWT_SECRET_KEY": NEW, "AUTHSVC_DATA_DIR": str(tmp_path)})
    )
    resigned = current_only.read({COOKIE_NAME: after})
    assert resigned.signed_in and not resigned.changed
    assert not current_only.read({COOKIE_NAME: before}).signed_in


def test_a_browser_session_used_during_the_rotation_outlives_the_previous_key(make_app):
    old = Pages(make_app(OLD).test_client())
    old.signup()
    rotated = make_app(NEW, previous=OLD).test_client()
    rotated.set_cookie(COOKIE_NAME, old.cookie())
    assert rotated.get("/account").status_code == 200  # the cookie is signed anew here
    # The previous key is dropped: the cookie still verifies, and the access token it holds
    # (signed with the dropped key) is replaced through the refresh token.
    later = make_app(NEW).test_client()
    later.set_cookie(COOKIE_NAME, rotated.get_cookie(COOKIE_NAME).value)
    page = later.get("/account")
    assert page.status_code == 200 and "alice@example.com" in page.text
    token = (
        SessionCookie(later.application.extensions["authsvc"].settings)
        .read({COOKIE_NAME: later.get_cookie(COOKIE_NAME).value})
        .access_token
    )
    assert jwt.get_unverified_header(token)["kid"] == key_id(NEW)


def test_without_the_previous_key_a_cookie_of_the_old_key_is_a_new_anonymous_session(make_app):
    old = Pages(make_app(OLD).test_client())
    old.signup()
    rotated = make_app(NEW).test_client()
    rotated.set_cookie(COOKIE_NAME, old.cookie())
    response = rotated.get("/account")
    assert response.status_code == 302 and response.headers["Location"].endswith("/login")


# -- idempotent retries across a rotation -------------------------------------------------------


def _signup_with_key(app: Any, key: str, email: str = "alice@example.com"):
    return app.test_client().post(
        "/api/v1/auth/signup",
        json={"email": email, "password": PASSWORD},
        headers={"Idempotency-Key": key},
    )


def test_a_retry_after_a_rotation_replays_the_first_answer(make_app, db):
    first = _signup_with_key(make_app(OLD), "retry-1")
    assert first.status_code == 201
    rotated = make_app(NEW, previous=OLD)
    again = _signup_with_key(rotated, "retry-1")
    assert again.status_code == 201
    assert again.get_json()["data"]["user"]["id"] == first.get_json()["data"]["user"]["id"]
    assert count(db, "auth.users") == 1
    # Still one key, one body: another body under the same key is refused.
    other = _signup_with_key(rotated, "retry-1", email="bob@example.com")
    assert other.status_code == 422
    assert other.get_json()["error"]["code"] == IdempotencyKeyReused.code


def test_without_the_previous_key_the_retry_does_not_match_its_first_request(make_app, db):
    assert _signup_with_key(make_app(OLD), "retry-2").status_code == 201
    again = _signup_with_key(make_app(NEW), "retry-2")
    assert again.status_code == 422
    assert again.get_json()["error"]["code"] == IdempotencyKeyReused.code
    assert count(db, "auth.users") == 1


def test_a_retry_after_a_rotation_while_the_first_request_runs_waits_for_its_answer(make_app, db):
    old, rotated = make_app(OLD), make_app(NEW, previous=OLD)
    db.execute(
        "CREATE FUNCTION public.fault_slow_profile() RETURNS trigger LANGUAGE plpgsql "
        "AS $$ BEGIN PERFORM pg_sleep(2); RETURN NEW; END $$"
    )
    db.execute(
        "CREATE TRIGGER fault_slow_profile BEFORE INSERT ON public.users "
        "FOR EACH ROW EXECUTE FUNCTION public.fault_slow_profile()"
    )
    try:
        answers: list[Any] = []
        first = threading.Thread(target=lambda: answers.append(_signup_with_key(old, "retry-3")))
        first.start()
        deadline = time.monotonic() + 5
        while not count(db, "authsvc.idempotency_keys") and time.monotonic() < deadline:
            time.sleep(0.02)
        again = _signup_with_key(rotated, "retry-3")
        first.join()
    finally:
        db.execute("DROP TRIGGER IF EXISTS fault_slow_profile ON public.users")
        db.execute("DROP FUNCTION IF EXISTS public.fault_slow_profile()")
    # The retry waited for the first request (API.md: up to 10 s) and got its very answer.
    assert answers[0].status_code == 201
    assert again.status_code == 201
    assert again.get_json() == answers[0].get_json()
    assert count(db, "auth.users") == 1


# -- AUTHSVC_PREVIOUS_SECRET_KEYS in the settings -----------------------------------------------


def prod(**env: str) -> dict[str, str]:
    return {
        "AUTHSVC_ENV": "production",
        "DATABASE_URL": "postgresql://x@localhost/x",
        "JWT_SECRET_KEY": STRONG,
        **env,
    }


def test_previous_keys_are_read_in_order_without_blanks_repeats_or_the_current_key():
    settings = load_settings(
        prod(AUTHSVC_PREVIOUS_SECRET_KEYS=f" {STRONG_TOO} ,, {STRONG},{NEW},{STRONG_TOO}")
    )
    assert settings.previous_secret_keys == (STRONG_TOO, NEW)
    assert settings.verification_keys == (STRONG, STRONG_TOO, NEW)


def test_production_refuses_a_weak_previous_key_without_repeating_it():
    with pytest.raises(ConfigError) as info:
        load_settings(prod(AUTHSVC_PREVIOUS_SECRET_KEYS=f"{STRONG_TOO},changeme123"))
    message = str(info.value)
    assert "AUTHSVC_PREVIOUS_SECRET_KEYS" in message and "key 2" in message
    assert "changeme123" not in message


def test_development_accepts_any_previous_key(tmp_path):
    settings = load_settings(
        {
            "JWT_SECRET_KEY": STRONG,
            "AUTHSVC_DATA_DIR": str(tmp_path),
            "AUTHSVC_PREVIOUS_SECRET_KEYS": "old-dev-key",
        }
    )
    assert settings.previous_secret_keys == ("old-dev-key",)


def test_settings_repr_hides_the_previous_keys():
    settings = load_settings(prod(AUTHSVC_PREVIOUS_SECRET_KEYS=STRONG_TOO))
    shown = repr(settings)
    assert STRONG_TOO not in shown and STRONG not in shown
    assert "previous_secret_keys='<redacted>'" in shown


# -- files holding secrets are owner-only from their creation -----------------------------------


class ModeWatch:
    """The permission bits of watched files, looked at whenever the process does anything
    audited (open, chmod, rename, subprocess, socket...). Python calls audit hooks before the
    operation, so a file written first and chmod-ed after is seen with its first mode."""

    def __init__(self, *fragments: str) -> None:
        self.fragments = fragments
        self.paths: set[str] = set()
        self.modes: dict[str, set[int]] = {}
        self.active = False
        self._busy = False
        sys.addaudithook(self._hook)  # hooks cannot be removed; inactive once the test ends

    def _hook(self, event: str, args: tuple) -> None:
        if not self.active or self._busy:
            return
        self._busy = True
        try:
            if event in ("open", "os.rename") and args and isinstance(args[0], str | Path):
                for path in (args[0], *(args[1:2] if event == "os.rename" else ())):
                    if any(f in os.path.basename(os.fspath(path)) for f in self.fragments):
                        self.paths.add(os.path.abspath(os.fspath(path)))
            for path in self.paths:
                try:
                    mode = os.stat(path).st_mode & 0o777
                except OSError:
                    continue
                self.modes.setdefault(path, set()).add(mode)
        finally:
            self._busy = False

    def __enter__(self) -> ModeWatch:
        self.active = True
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._hook("exit", ())
        self.active = False


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)  # the usual umask: a plain write would make a 0644 file
    yield
    os.umask(previous)


def test_the_embedded_database_files_are_owner_only_from_their_creation(umask_022):
    data_dir = Path(tempfile.mkdtemp(prefix="authsvc-test-modes-"))
    data_dir.chmod(0o755)  # reachable by the system user the cluster runs as, under root
    try:
        with ModeWatch("embedded.json", "pwfile") as watch:
            cluster = embedded.ensure_running(data_dir)
        assert cluster.password
        names = {os.path.basename(p) for p in watch.modes}
        assert "embedded.json" in names and ".pwfile" in names, watch.modes
        assert all(modes == {0o600} for modes in watch.modes.values()), {
            p: sorted(oct(m) for m in modes) for p, modes in watch.modes.items()
        }
        assert (data_dir / "embedded.json").stat().st_mode & 0o777 == 0o600
    finally:
        embedded.stop(data_dir)
        pointer = data_dir / "pgdata.path"
        if pointer.exists():
            shutil.rmtree(Path(pointer.read_text().strip()).parent, ignore_errors=True)
        shutil.rmtree(data_dir, ignore_errors=True)


def test_the_development_signing_key_file_is_owner_only_from_its_creation(tmp_path, umask_022):
    with ModeWatch("jwt_secret") as watch:
        settings = load_settings({"AUTHSVC_DATA_DIR": str(tmp_path), "JWT_SECRET_KEY": ""})
    assert settings.jwt_secret_generated
    assert watch.modes and all(modes == {0o600} for modes in watch.modes.values())


# -- connection strings: the password hidden in every form libpq accepts ------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://app:s3cr3t@db.internal/authsvc", "postgresql://app:***@db.internal/authsvc"),
        (
            "postgres://app:s3cr3t@db.internal:6543/authsvc?sslmode=require",
            "postgres://app:***@db.internal:6543/authsvc?sslmode=require",
        ),
        ("postgresql://app:s3%40cr3t@db/authsvc", "postgresql://app:***@db/authsvc"),
        (
            "postgresql://app@db/authsvc?sslmode=require&password=s3cr3t",
            "postgresql://app@db/authsvc?sslmode=require&password=***",
        ),
        (
            "postgresql:///authsvc?host=/var/run/postgresql&pass%77ord=s3cr3t",
            "postgresql:///authsvc?host=/var/run/postgresql&pass%77ord=***",
        ),
        (
            "postgresql://app:s3cr3t@db1:5432,db2:5433/authsvc?target_session_attrs=read-write",
            "postgresql://app:***@db1:5432,db2:5433/authsvc?target_session_attrs=read-write",
        ),
        ("postgresql://app:s3cr3t@[::1]:5432/authsvc", "postgresql://app:***@[::1]:5432/authsvc"),
        ("postgresql://app:s3@cr/3t?x@db/authsvc", "postgresql://app:***@db/authsvc"),
        ("postgresql://app@tenant:s3cr3t@db/authsvc", "postgresql://app@tenant:***@db/authsvc"),
        (
            "postgresql://app@db/authsvc?sslpassword=s3cr3t",
            "postgresql://app@db/authsvc?sslpassword=***",
        ),
        ("host=db password=s3cr3t dbname=authsvc", "host=db password=*** dbname=authsvc"),
        ("host=db password = s3cr3t dbname=authsvc", "host=db password = *** dbname=authsvc"),
        ("host=db password='s3 cr\\'3t' dbname=authsvc", "host=db password=*** dbname=authsvc"),
        (
            "host=db1,db2 port=5432,5433 user=app password=s3cr3t",
            "host=db1,db2 port=5432,5433 user=app password=***",
        ),
        (
            "application_name='password=x' password=s3cr3t",
            "application_name='password=x' password=***",
        ),
        ("host=db sslpassword=s3cr3t", "host=db sslpassword=***"),
        ("postgresql://db/authsvc", "postgresql://db/authsvc"),
        ("host=db dbname=authsvc", "host=db dbname=authsvc"),
    ],
)
def test_connection_strings_are_shown_without_their_password(url, shown):
    assert redact_url(url) == shown
    assert "s3" not in shown


def test_settings_repr_hides_a_key_value_password(tmp_path):
    settings = load_settings(
        {
            "DATABASE_URL": "host=db user=app password='s3 cr3t' dbname=x",
            "JWT_SECRET_KEY": STRONG,
            "AUTHSVC_DATA_DIR": str(tmp_path),
        }
    )
    assert "s3 cr3t" not in repr(settings) and "password=***" in repr(settings)


def _conninfo(url: str) -> str:
    return " ".join(f"{k}='{v}'" for k, v in conninfo_to_dict(url).items())


def _query_form(url: str) -> str:
    p = conninfo_to_dict(url)
    return (
        f"postgresql://{p['user']}@{p['host']}:{p['port']}/{p['dbname']}?password={p['password']}"
    )


def _multi_host(url: str) -> str:
    p = conninfo_to_dict(url)
    return (
        f"postgresql://{p['user']}:{p['password']}@127.0.0.1:1,{p['host']}:{p['port']}"
        f"/{p['dbname']}"
    )


@pytest.mark.parametrize("form", [_conninfo, _query_form, _multi_host])
def test_the_command_line_never_prints_the_database_password(pg, tmp_path, form):
    url = pg.create_database("authsvc_test_redact")
    try:
        password = conninfo_to_dict(url)["password"]
        env = {
            "JWT_SECRET_KEY": TEST_SECRET,
            "AUTHSVC_DATA_DIR": str(tmp_path / "data"),
            "DATABASE_URL": form(url),
        }
        migrated = run_cli(["migrate"], env, cwd=tmp_path)
        assert migrated.returncode == 0, migrated.stderr
        doctor = run_cli(["doctor"], env, cwd=tmp_path)
        assert "ok   database" in doctor.stdout, doctor.stdout + doctor.stderr
        assert "***" in migrated.stderr and "***" in doctor.stderr
        for output in (migrated.stdout, migrated.stderr, doctor.stdout, doctor.stderr):
            assert password not in output
    finally:
        pg.drop_database(url)


# -- a failing constraint's row values never reach a log line ----------------------------------


def _log_entries(err: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in err.splitlines() if line.startswith("{")]


def _scrubbed_tracebacks(err: str) -> list[str]:
    """The tracebacks logged, asserting that at least one carried a DETAIL (now redacted)."""
    tracebacks = [e["traceback"] for e in _log_entries(err) if e.get("traceback")]
    assert any("DETAIL:  <redacted>" in t for t in tracebacks), tracebacks
    return tracebacks


@pytest.mark.parametrize(
    ("text", "kept", "gone"),
    [
        ("{'details': 'Failing row contains (x@example.com)'}", "'details'", "x@example.com"),
        ("Key (email)=(x@example.com) already exists.", "already exists", "x@example.com"),
        ("insert failed\nKey (email)=(x@example.com)", "Key (email)=(", "x@example.com"),
        (
            "Failing row contains (1, x@example.com, $argon2id$v=19).",
            "Failing row",
            "x@example.com",
        ),
        ("ERROR: refused\nDETAIL:  x@example.com is taken", "DETAIL:", "x@example.com"),
    ],
)
def test_each_kind_of_row_value_is_scrubbed_on_its_own(text, kept, gone):
    """Each pattern alone (the words that let a line skip the patterns must not skip these)."""
    scrubbed = scrub(text)
    assert kept in scrubbed and gone not in scrubbed, scrubbed


def test_a_line_without_row_values_is_kept_as_it_is():
    line = "POST /api/v1/auth/signup 201 keyed (by email) with a detail or two"
    assert scrub(line) is line


def test_a_refused_identity_row_with_its_email_and_hash_reaches_no_log_line(auth, db, capfd):
    # A CHECK added NOT VALID refuses every new row; its DETAIL would list the whole row.
    db.execute("ALTER TABLE auth.users ADD CONSTRAINT fault_refuse_rows CHECK (false) NOT VALID")
    try:
        body = auth.signup("victim@example.com", expect=500)
    finally:
        db.execute("ALTER TABLE auth.users DROP CONSTRAINT fault_refuse_rows")
    assert body["error"]["code"] == SignupFailed.code
    assert body["error"]["details"]["reason"] == "check_violation"
    err = capfd.readouterr().err
    _scrubbed_tracebacks(err)
    for value in ("victim@example.com", "$argon2id$", PASSWORD):
        assert value not in err


def test_a_unique_violation_under_a_trigger_leaves_its_key_values_out_of_the_logs(auth, db, capfd):
    # A trigger copies each new profile into a table whose unique key already holds this
    # username and email: the violation's DETAIL is "Key (username, email)=(...)".
    db.execute(
        "CREATE TABLE public.fault_claims (username text, email text, UNIQUE (username, email))"
    )
    db.execute("INSERT INTO public.fault_claims VALUES ('taken_name', 'victim@example.com')")
    db.execute(
        "CREATE FUNCTION public.fault_claim() RETURNS trigger LANGUAGE plpgsql "
        "SECURITY DEFINER SET search_path = public AS $$ BEGIN "
        "INSERT INTO public.fault_claims VALUES (NEW.username, NEW.email); RETURN NEW; "
        "END $$"
    )
    db.execute(
        "CREATE TRIGGER fault_claim AFTER INSERT ON public.users "
        "FOR EACH ROW EXECUTE FUNCTION public.fault_claim()"
    )
    try:
        body = auth.signup("victim@example.com", username="taken_name", expect=500)
    finally:
        db.execute("DROP TRIGGER IF EXISTS fault_claim ON public.users")
        db.execute("DROP FUNCTION IF EXISTS public.fault_claim()")
        db.execute("DROP TABLE IF EXISTS public.fault_claims")
    details = body["error"]["details"]
    assert (details["step"], details["reason"]) == ("profile_insert", "unique_violation")
    err = capfd.readouterr().err
    _scrubbed_tracebacks(err)
    for value in ("victim@example.com", "taken_name", "$argon2id$"):
        assert value not in err


def test_the_driver_error_itself_carries_the_values_the_logs_leave_out(db):
    # What the tests above guard against: psycopg's message does include the DETAIL.
    db.execute("CREATE TEMP TABLE fault_unique (email text UNIQUE)")
    db.execute("INSERT INTO fault_unique VALUES ('victim@example.com')")
    with pytest.raises(psycopg.errors.UniqueViolation) as info:
        db.execute("INSERT INTO fault_unique VALUES ('victim@example.com')")
    assert "Key (email)=(victim@example.com)" in str(info.value)
