"""Supabase's answers in our terms: supabase-py errors as AuthErrors, users and rows as
Identity and Profile, and what an API key claims to be (read, never logged)."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import httpx
from postgrest.exceptions import APIError
from supabase_auth.errors import AuthApiError, AuthRetryableError, AuthWeakPasswordError
from supabase_auth.types import User

from authsvc.errors import (
    AuthError,
    DatabaseUnavailable,
    EmailTaken,
    RateLimited,
    StorageError,
    UsernameTaken,
    ValidationFailed,
    WeakPassword,
)
from authsvc.stores import COMPLETE, PENDING, Identity, Profile

# app_metadata key that records where a signup stands (PENDING or COMPLETE).
SIGNUP_MARK = "authsvc_signup"
AUTH_SERVICE = "supabase_auth"
REST_SERVICE = "supabase_rest"

# Supabase Auth's weak-password reasons (GoTrue WeakPasswordError.Reasons), in our words.
_WEAK_REASONS = {
    "length": "The password is too short for this Supabase project's policy.",
    "characters": "The password needs more kinds of characters for this Supabase project.",
    "pwned": "This password appears in a known data breach; choose another.",
}

# PostgREST forwards Postgres's SQLSTATE in APIError.code; PGRST* codes are its own.
_REST_REASONS: dict[str, tuple[str, str]] = {
    "23503": ("foreign_key_violation", "the profile's id must be an existing Supabase Auth user"),
    "23505": (
        "unique_violation",
        "a profile with this id already exists (a trigger on auth.users that creates "
        "profiles? run `authsvc doctor`)",
    ),
    "23514": ("check_violation", "a CHECK constraint on public.users refused the row"),
    "23502": ("not_null_violation", "a NOT NULL column of public.users received no value"),
    "42501": (
        "permission_denied",
        "the service role lacks a privilege on public.users: apply the GRANTs in "
        "supabase/migrations",
    ),
    "42P01": ("undefined_table", "public.users is missing: apply the SQL in supabase/migrations"),
    "PGRST205": (
        "undefined_table",
        "PostgREST does not know public.users: apply the SQL in supabase/migrations, then "
        "reload the schema cache",
    ),
    "42703": ("undefined_column", "a column of public.users is missing: apply supabase/migrations"),
    "PGRST204": (
        "undefined_column",
        "PostgREST does not know a column of public.users: apply supabase/migrations",
    ),
    "PGRST116": ("not_single_row", "a single row was expected and none or several came back"),
    "57014": ("statement_timeout", "the database took too long to answer"),
    "40001": ("serialization_failure", "a concurrent transaction conflicted; retry"),
    "40P01": ("deadlock_detected", "a concurrent transaction conflicted; retry"),
    "P0001": ("trigger_raised", "a trigger on public.users raised an error"),
    "25006": ("read_only", "the database is read-only"),
    "PGRST301": ("api_key_rejected", "PostgREST refused the service role key"),
    "PGRST302": ("api_key_rejected", "PostgREST refused the service role key"),
    "PGRST303": ("api_key_rejected", "PostgREST refused the service role key"),
}
# Codes meaning PostgREST could not reach its database, or a proxy could not reach PostgREST
# (postgrest.exceptions.generate_default_error_message puts the HTTP status in `code` when the
# body is not PostgREST's JSON).
_REST_UNAVAILABLE = {"PGRST000", "PGRST001", "PGRST002", "PGRST003", "502", "503", "504"}

# -- translation: the one place supabase-py's errors become ours --------------------------------


def was_sent(exc: BaseException) -> bool:
    """False when the request provably never reached the server (no connection was made)."""
    cause = exc.__cause__ or exc
    return not isinstance(cause, httpx.ConnectError | httpx.ConnectTimeout)


def auth_error(exc: Exception) -> AuthError:
    """The AuthError for a supabase_auth error (Supabase Auth, the GoTrue server)."""
    if isinstance(exc, AuthWeakPasswordError):  # not an AuthApiError subclass
        reasons = [_WEAK_REASONS.get(r, r) for r in exc.reasons or []]
        return WeakPassword(details={"password": reasons or [exc.message]})
    if isinstance(exc, AuthRetryableError):  # network failure, 502/503/504 or Cloudflare 52x
        return DatabaseUnavailable(database=AUTH_SERVICE, sent=was_sent(exc))
    if isinstance(exc, AuthApiError):
        code, status = exc.code, exc.status
        if code in ("email_exists", "user_already_exists"):
            return EmailTaken()
        if status == 429 or code in ("over_request_rate_limit", "over_email_send_rate_limit"):
            return RateLimited(
                "Supabase Auth is rate limiting these requests; retry in a minute.",
                details={"retry_after": 60},
                headers={"Retry-After": "60"},
            )
        if code in ("email_address_invalid", "email_address_not_authorized") or (
            code == "validation_failed" and "email" in exc.message.lower()
        ):
            return ValidationFailed(details={"email": [exc.message]})
        if code in ("not_admin", "bad_jwt", "no_authorization") or status in (401, 403):
            return StorageError(
                "auth_key_rejected",
                "Supabase Auth refused an API key: check SUPABASE_SERVICE_ROLE_KEY and "
                "SUPABASE_ANON_KEY with `authsvc doctor`",
            )
        if status >= 500:
            return StorageError(
                "auth_server_error",
                f"Supabase Auth answered {status} ({code or 'no code'}); see the project's Auth "
                "logs",
            )
        return StorageError(f"auth_{code}" if code else f"auth_http_{status}")
    return StorageError("auth_unexpected_response", "Supabase Auth answered something unexpected")


def rest_error(exc: APIError) -> AuthError:
    """The AuthError for a PostgREST error; map on `.code` (APIError has no HTTP status)."""
    code = exc.code or ""
    if code == "23505":
        said = f"{exc.message or ''} {exc.details or ''}"
        if "users_username_key" in said or "(username)" in said:
            return UsernameTaken()
    if code in _REST_UNAVAILABLE or code.startswith("08"):
        return DatabaseUnavailable(database=REST_SERVICE)
    if code in _REST_REASONS:
        return StorageError(*_REST_REASONS[code])
    if code.startswith("22"):
        return StorageError("invalid_data", "the database refused a value")
    if len(code) == 5 and code[:2].isalnum() and not code.startswith("PGRST"):
        return StorageError(f"database_error_{code}")
    return StorageError(f"rest_error_{code}" if code else "rest_error")


# -- shapes ---------------------------------------------------------------------------------------


def timestamp(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def signup_state(user: User) -> str:
    """Where this user's signup stands; users created outside authsvc count as complete."""
    mark = (user.app_metadata or {}).get(SIGNUP_MARK)
    return PENDING if mark == PENDING else COMPLETE


def identity(user: User) -> Identity:
    return Identity(
        id=UUID(user.id),
        email=user.email or "",
        password_hash=None,  # held by Supabase Auth, never returned
        is_anonymous=user.is_anonymous,
        email_confirmed_at=user.email_confirmed_at,
        banned_until=timestamp(user.banned_until),
        signup_state=signup_state(user),
        created_at=user.created_at,
    )


def profile(row: dict[str, Any] | None) -> Profile | None:
    if not row:
        return None
    return Profile(
        id=UUID(str(row["id"])),
        email=row["email"],
        username=row.get("username"),
        display_name=row.get("display_name"),
        created_at=timestamp(row.get("created_at")),
        updated_at=timestamp(row.get("updated_at")),
    )


def key_role(key: str | None) -> tuple[str | None, str | None]:
    """(role, project ref) an API key claims, read without verifying it.

    Legacy keys are JWTs whose payload says `role: anon | service_role` and `ref`; the newer
    keys say what they are in their prefix (`sb_publishable_...`, `sb_secret_...`).
    """
    if not key:
        return None, None
    if key.startswith("sb_secret_"):
        return "service_role", None
    if key.startswith("sb_publishable_"):
        return "anon", None
    parts = key.split(".")
    if len(parts) != 3:
        return None, None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return None, None
    if not isinstance(payload, dict):
        return None, None
    return payload.get("role"), payload.get("ref")


def key_problems(url: str | None, service_key: str | None, anon_key: str | None) -> list[str]:
    """What is wrong with the two keys, in sentences that never include a key."""
    service_role, service_ref = key_role(service_key)
    anon_role, anon_ref = key_role(anon_key)
    if service_role == "anon" and anon_role == "service_role":
        return [
            "SUPABASE_SERVICE_ROLE_KEY and SUPABASE_ANON_KEY are swapped -> exchange their values"
        ]
    problems = []
    if service_role != "service_role":
        problems.append(
            "SUPABASE_SERVICE_ROLE_KEY is "
            + (f"a {service_role!r} key" if service_role else "not a Supabase API key")
            + " -> set the service_role (secret) key from Project Settings -> API keys"
        )
    if anon_role != "anon":
        problems.append(
            "SUPABASE_ANON_KEY is "
            + (f"a {anon_role!r} key" if anon_role else "not a Supabase API key")
            + " -> set the anon (publishable) key; a secret key there would bypass row-level "
            "security for every sign-in"
        )
    host = urlsplit(url or "").hostname or ""
    project = host.split(".")[0] if host.endswith(".supabase.co") else None
    for name, ref in (("SUPABASE_SERVICE_ROLE_KEY", service_ref), ("SUPABASE_ANON_KEY", anon_ref)):
        if project and ref and ref != project:
            problems.append(
                f"{name} belongs to project {ref!r}, but SUPABASE_URL points at {project!r}"
            )
    return problems
