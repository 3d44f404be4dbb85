"""The API's error codes in words a person understands, placed next to the field they concern."""

from __future__ import annotations

from dataclasses import dataclass, field

from authsvc.errors import (
    AuthError,
    DatabaseUnavailable,
    EmailNotConfirmed,
    EmailTaken,
    InvalidCredentials,
    LinkInvalid,
    RateLimited,
    SignupFailed,
    UserBanned,
    UsernameTaken,
    ValidationFailed,
    WeakPassword,
)

# What the person was doing when a signup step failed.
_STEPS = {
    "identity_create": "creating your sign-in details",
    "profile_insert": "saving your profile",
    "profile_verify": "checking the profile we had just saved",
    "complete": "finishing your account",
}

# Why, without SQL: the stable reason words of SIGNUP_FAILED's details.
_REASONS = {
    "trigger_raised": "the database refused the new profile",
    "foreign_key_violation": "the profile could not be linked to your sign-in details",
    "unique_violation": "a record with the same key already exists",
    "check_violation": "the database refused one of the values",
    "not_null_violation": "a value the database requires was missing",
    "permission_denied": "the service is not allowed to write the profile",
    "connection_lost": "the connection to the database was lost",
    "statement_timeout": "the database took too long to answer",
    "lock_timeout": "the database was busy with another change",
    "serialization_failure": "another change got in the way",
    "deadlock_detected": "another change got in the way",
    "read_only": "the database is read-only at the moment",
    "undefined_table": "the database is not set up completely",
    "undefined_column": "the database is not set up completely",
    "invalid_data": "the database refused one of the values",
    "no_row_returned": "the database did not keep the profile",
    "id_mismatch": "the database returned a different profile",
    "email_mismatch": "the database returned a different profile",
}

# Marshmallow's wording for a field that was left empty, per field.
_MISSING = {
    "email": "Enter your email address.",
    "password": "Enter your password.",
}
_MARSHMALLOW_MISSING = "Missing data for required field."


@dataclass(frozen=True)
class Alert:
    """A message about the whole form (or page), shown above it."""

    title: str
    lines: list[str] = field(default_factory=list)
    code: str | None = None
    request_id: str | None = None
    tone: str = "error"

    @property
    def reference(self) -> str | None:
        """What a person can quote to support: the error code and the request id."""
        parts = [p for p in (self.code, self.request_id and f"request {self.request_id}") if p]
        return " · ".join(parts) or None


def field_errors(err: AuthError) -> dict[str, list[str]]:
    """The messages that belong next to a field, by field name."""
    if isinstance(err, EmailTaken):
        return {
            "email": ["An account with this email already exists. Log in, or use another email."]
        }
    if isinstance(err, UsernameTaken):
        return {"username": ["This username is taken. Try another one."]}
    if isinstance(err, WeakPassword):
        return {"password": [str(m) for m in err.details.get("password", [])]}
    if isinstance(err, ValidationFailed):
        out: dict[str, list[str]] = {}
        for name, messages in err.details.items():
            if isinstance(messages, dict):  # nested structures do not occur in these forms
                messages = [str(m) for m in messages.values()]
            elif not isinstance(messages, list):
                messages = [str(messages)]
            out[name] = [
                _MISSING.get(name, "This field is required.") if m == _MARSHMALLOW_MISSING else m
                for m in map(str, messages)
            ]
        return out
    return {}


def alert_for(err: AuthError, request_id: str | None, email: str | None = None) -> Alert:
    """The message above the form for `err`."""
    code = err.code
    if isinstance(err, SignupFailed):
        step = _STEPS.get(err.step, "creating your account")
        reason = _REASONS.get(err.reason, "the database reported an error")
        lines = [f"Something went wrong while {step}: {reason}."]
        if err.details.get("compensated"):
            who = f" for {email}" if email else ""
            lines.append(
                f"Nothing was created: there is no account{who}, so you can safely try again."
            )
        else:
            lines.append(
                "Part of the account may remain for a few minutes. It cannot be used to log in "
                "and will be removed automatically; try again later."
            )
        return Alert("We couldn't create your account", lines, code, request_id)
    if isinstance(err, InvalidCredentials):
        return Alert(
            "That email and password don't match an account",
            ["Check both and try again. Passwords are case-sensitive."],
            code,
            request_id,
        )
    if isinstance(err, EmailNotConfirmed):
        return Alert(
            "Confirm your email address first",
            ["Open the link we sent you, then log in again. No mail? Ask for a new link below."],
            code,
            request_id,
        )
    if isinstance(err, LinkInvalid):
        return Alert(
            "This link does not work",
            [
                "It was already used, it has expired, or it was copied incompletely. "
                "Ask for a new one."
            ],
            code,
            request_id,
        )
    if isinstance(err, UserBanned):
        return Alert("This account is suspended", [], code, request_id)
    if isinstance(err, RateLimited):
        wait = err.details.get("retry_after")
        when = f"in {wait} seconds" if wait else "in a little while"
        return Alert(
            "Too many attempts", [f"For your security, try again {when}."], code, request_id
        )
    if isinstance(err, DatabaseUnavailable):
        return Alert(
            "We can't reach our database right now",
            ["Nothing was changed. Try again in a few seconds."],
            code,
            request_id,
        )
    if err.status < 500 and field_errors(err):
        return Alert("Check the highlighted fields", [], None, None)
    if err.status < 500:
        return Alert("That didn't work", [err.message], code, request_id)
    return Alert(
        "Something went wrong on our side",
        ["Try again. If it keeps happening, contact support and quote the reference below."],
        code,
        request_id,
    )
