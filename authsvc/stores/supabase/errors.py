"""supabase-py's errors in our terms: the one place Supabase Auth's and PostgREST's errors are
interpreted."""

from __future__ import annotations

import httpx
from postgrest.exceptions import APIError
from supabase_auth.errors import AuthApiError, AuthRetryableError, AuthWeakPasswordError

from authsvc.errors import (
    AuthError,
    DatabaseUnavailable,
    EmailTaken,
    RateLimited,
    Reason,
    StorageError,
    UsernameTaken,
    ValidationFailed,
    WeakPassword,
)

AUTH_SERVICE = "supabase_auth"
REST_SERVICE = "supabase_rest"

# Supabase Auth's weak-password reasons (GoTrue WeakPasswordError.Reasons), in our words.
_WEAK_REASONS = {
    "length": "The password is too short for this Supabase project's policy.",
    "characters": "The password needs more kinds of characters for this Supabase project.",
    "pwned": "This password appears in a known data breach; choose another.",
}

# PostgREST forwards Postgres's SQLSTATE in APIError.code; PGRST* codes are its own.
_REST_REASONS: dict[str, tuple[Reason, str]] = {
    "23503": (
        Reason.FOREIGN_KEY_VIOLATION,
        "the profile's id must be an existing Supabase Auth user",
    ),
    "23505": (
        Reason.UNIQUE_VIOLATION,
        "a profile with this id already exists (a trigger on auth.users that creates "
        "profiles? run `authsvc doctor`)",
    ),
    "23514": (Reason.CHECK_VIOLATION, "a CHECK constraint on public.users refused the row"),
    "23502": (Reason.NOT_NULL_VIOLATION, "a NOT NULL column of public.users received no value"),
    "42501": (
        Reason.PERMISSION_DENIED,
        "the service role lacks a privilege on public.users: apply the GRANTs in "
        "supabase/migrations",
    ),
    "42P01": (
        Reason.UNDEFINED_TABLE,
        "public.users is missing: apply the SQL in supabase/migrations",
    ),
    "PGRST205": (
        Reason.UNDEFINED_TABLE,
        "PostgREST does not know public.users: apply the SQL in supabase/migrations, then "
        "reload the schema cache",
    ),
    "42703": (
        Reason.UNDEFINED_COLUMN,
        "a column of public.users is missing: apply supabase/migrations",
    ),
    "PGRST204": (
        Reason.UNDEFINED_COLUMN,
        "PostgREST does not know a column of public.users: apply supabase/migrations",
    ),
    "PGRST116": (Reason.NOT_SINGLE_ROW, "a single row was expected and none or several came back"),
    "57014": (Reason.STATEMENT_TIMEOUT, "the database took too long to answer"),
    "40001": (Reason.SERIALIZATION_FAILURE, "a concurrent transaction conflicted; retry"),
    "40P01": (Reason.DEADLOCK_DETECTED, "a concurrent transaction conflicted; retry"),
    "P0001": (Reason.TRIGGER_RAISED, "a trigger on public.users raised an error"),
    "25006": (Reason.READ_ONLY, "the database is read-only"),
    "PGRST301": (Reason.API_KEY_REJECTED, "PostgREST refused the service role key"),
    "PGRST302": (Reason.API_KEY_REJECTED, "PostgREST refused the service role key"),
    "PGRST303": (Reason.API_KEY_REJECTED, "PostgREST refused the service role key"),
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
                Reason.AUTH_KEY_REJECTED,
                "Supabase Auth refused an API key: check SUPABASE_SERVICE_ROLE_KEY and "
                "SUPABASE_ANON_KEY with `authsvc doctor`",
                code,
                refused=True,
            )
        if status >= 500:
            return StorageError(
                Reason.AUTH_SERVER_ERROR,
                f"Supabase Auth answered {status} ({code or 'no code'}); see the project's Auth "
                "logs",
                code,
            )
        if code == "user_not_found" or status == 404:
            return StorageError(Reason.NOT_FOUND, None, code, refused=True)
        return StorageError(
            Reason.AUTH_REFUSED,
            f"Supabase Auth refused the request ({code or status})",
            code or str(status),
            refused=True,
        )
    return StorageError(Reason.UNEXPECTED_RESPONSE, "Supabase Auth answered something unexpected")


def rest_error(exc: APIError) -> AuthError:
    """The AuthError for a PostgREST error; map on `.code` (APIError has no HTTP status)."""
    code = exc.code or ""
    if code == "23505":
        said = f"{exc.message or ''} {exc.details or ''}"
        if "users_username_key" in said or "(username)" in said:
            return UsernameTaken()
    if code in _REST_UNAVAILABLE or code.startswith("08"):
        return DatabaseUnavailable(database=REST_SERVICE)
    # PostgREST answered an error: the statement wrote nothing.
    if code in _REST_REASONS:
        reason, hint = _REST_REASONS[code]
        return StorageError(reason, hint, code, refused=True)
    if code.startswith("22"):
        return StorageError(Reason.INVALID_DATA, "the database refused a value", code, refused=True)
    if len(code) == 5 and code[:2].isalnum() and not code.startswith("PGRST"):
        return StorageError(Reason.DATABASE_ERROR, None, code, refused=True)
    return StorageError(Reason.REST_ERROR, None, code or None)
