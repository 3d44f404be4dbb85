"""The AuthError hierarchy and the response envelope (error_handlers.py turns errors into
responses; serving.py the requests gunicorn refuses before the app runs)."""

from __future__ import annotations

from typing import Any

from authsvc.reasons import Reason

__all__ = ["Reason"]  # re-exported: where a storage step's reason is named


_REGISTRY: dict[str, type[AuthError]] = {}


class AuthError(Exception):
    """Base of every error the service answers with; one subclass per code in API.md."""

    status = 500
    code = "INTERNAL_ERROR"
    message = "Something went wrong on our side. Try again; if it persists, quote the request id."

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "code" in cls.__dict__:  # subclasses that share a code (StorageError) do not claim it
            _REGISTRY.setdefault(cls.code, cls)

    @classmethod
    def for_code(cls, code: str | None) -> type[AuthError] | None:
        """The class that answers `code`, or None for a code nobody answers."""
        return _REGISTRY.get(code or "")

    @classmethod
    def restore(cls, body: dict[str, Any]) -> AuthError:
        """The error a stored envelope body describes (an idempotent replay), as it was
        answered: same code, message and details."""
        known = cls.for_code(body.get("code")) or InternalError
        err = known.__new__(known)
        AuthError.__init__(err, body.get("message"), body.get("details"))
        return err

    def __init__(
        self,
        message: str | None = None,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or type(self).message
        self.details = details or {}
        self.headers = headers or {}
        super().__init__(self.message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, details={self.details!r})"


class BadRequest(AuthError):
    status, code = 400, "BAD_REQUEST"
    message = "The request body is not valid JSON, or not a JSON object."


class NotFound(AuthError):
    status, code = 404, "NOT_FOUND"
    message = "There is no such endpoint."


class MethodNotAllowed(AuthError):
    status, code = 405, "METHOD_NOT_ALLOWED"
    message = "This endpoint does not accept that method."


class PayloadTooLarge(AuthError):
    status, code = 413, "PAYLOAD_TOO_LARGE"
    message = "The request body is larger than this service accepts."


# Requests gunicorn refuses before the app runs, answered by serving.Worker.handle_error.


class UriTooLong(AuthError):
    status, code = 414, "URI_TOO_LONG"
    message = (
        "The request line (method, path and query string) is longer than this service accepts."
    )


class HeadersTooLarge(AuthError):
    status, code = 431, "HEADERS_TOO_LARGE"
    message = "A request header, or the headers together, are larger than this service accepts."


class ExpectationFailed(AuthError):
    status, code = 417, "EXPECTATION_FAILED"
    message = "The only Expect this service honours is 100-continue."


class NotImplementedHere(AuthError):
    status, code = 501, "NOT_IMPLEMENTED"
    message = (
        "The request asks for what this service does not implement "
        "(a Transfer-Encoding it does not know)."
    )


class UnsupportedMediaType(AuthError):
    status, code = 415, "UNSUPPORTED_MEDIA_TYPE"
    message = "Send the body as JSON with Content-Type: application/json."


class ValidationFailed(AuthError):
    status, code = 422, "VALIDATION_FAILED"
    message = "Some fields are missing or invalid; see details for each field."


class WeakPassword(AuthError):
    status, code = 422, "WEAK_PASSWORD"
    message = "The password does not meet the password policy; see details.password."


class IdempotencyKeyReused(AuthError):
    status, code = 422, "IDEMPOTENCY_KEY_REUSED"
    message = "This Idempotency-Key was already used with a different request body."


class IdempotencyKeyInFlight(AuthError):
    status, code = 409, "IDEMPOTENCY_KEY_IN_USE"
    message = "A request with this Idempotency-Key is still being processed; retry shortly."


class EmailTaken(AuthError):
    status, code = 409, "EMAIL_TAKEN"
    message = "An account with this email already exists."


class UsernameTaken(AuthError):
    status, code = 409, "USERNAME_TAKEN"
    message = "This username is taken."


class AuthRequired(AuthError):
    status, code = 401, "AUTH_REQUIRED"
    message = "Send an access token in the Authorization: Bearer header."


class InvalidCredentials(AuthError):
    status, code = 401, "INVALID_CREDENTIALS"
    message = "Invalid email or password."


class TokenInvalid(AuthError):
    status, code = 401, "TOKEN_INVALID"
    message = "The token is malformed, has a bad signature, or is unknown."


class TokenExpired(AuthError):
    status, code = 401, "TOKEN_EXPIRED"
    message = "The token has expired; refresh the session or log in again."


class TokenRevoked(AuthError):
    status, code = 401, "TOKEN_REVOKED"
    message = "The session this token belongs to has ended; log in again."


class AccountGone(TokenRevoked):
    """The account was removed (closed, deleted by an admin) while this request was using it,
    so no session can start for it. Login answers it as INVALID_CREDENTIALS, as for an
    account that does not exist."""

    message = "The account this token belongs to no longer exists."


class RefreshTokenReused(AuthError):
    status, code = 401, "REFRESH_TOKEN_REUSED"
    message = (
        "This refresh token was already used. The whole session has been revoked as a "
        "precaution; log in again."
    )


class UserBanned(AuthError):
    status, code = 403, "USER_BANNED"
    message = "This account is suspended."


class RateLimited(AuthError):
    status, code = 429, "RATE_LIMITED"
    message = "Too many requests; wait before retrying."


class SignupFailed(AuthError):
    """A signup failed after it started writing; details name the step, reason and compensation."""

    status, code = 500, "SIGNUP_FAILED"
    message = "The account could not be created."

    def __init__(
        self,
        step: str,
        reason: Reason | str,
        compensated: bool,
        hint: str | None = None,
        sqlstate: str | None = None,
    ) -> None:
        outcome = (
            "Nothing was created; it is safe to retry."
            if compensated
            else "Part of the account may remain: it cannot sign in, and it is removed "
            "automatically; log in first if you think the account was created."
        )
        reason = str(reason)
        message = f"The account could not be created: step {step} failed ({reason}). {outcome}"
        details: dict[str, Any] = {"step": step, "reason": reason, "compensated": compensated}
        if hint:
            details["hint"] = hint
        if sqlstate and reason == Reason.DATABASE_ERROR:
            details["sqlstate"] = sqlstate  # the catch-all reason: say which error it was
        super().__init__(message, details)

    @property
    def step(self) -> str:
        return self.details["step"]

    @property
    def reason(self) -> str:
        return self.details["reason"]


class InternalError(AuthError):
    status, code = 500, "INTERNAL_ERROR"


class DatabaseUnavailable(AuthError):
    """The database (or Supabase service) could not be reached, or the connection was lost.

    `sent` is False when no connection could be had, so no statement can have reached the
    server. `lost` is True when the connection died mid-request, so the outcome of what was
    sent is unknown. Every layout and backend answers a lost connection with this one error;
    the signup saga says which step it hit (SIGNUP_FAILED, reason connection_lost).
    """

    status, code = 503, "DATABASE_UNAVAILABLE"
    message = "The database cannot be reached right now; retry in a few seconds."

    def __init__(
        self,
        message: str | None = None,
        database: str | None = None,
        sent: bool = True,
        lost: bool = False,
    ) -> None:
        super().__init__(message, {"database": database} if database else None)
        self.headers["Retry-After"] = "5"
        self.sent = sent
        self.lost = lost


class NotReady(AuthError):
    status, code = 503, "NOT_READY"
    message = "The service is not ready to serve requests."


class StorageError(InternalError):
    """A storage step failed for a reason that is not the client's (raised by stores).

    `reason` is a Reason; `code` the backend's own code when it has one (a SQLSTATE, a Supabase
    Auth error code). The saga turns it into SignupFailed naming the step; anywhere else it
    answers 500 INTERNAL_ERROR.
    """

    def __init__(
        self,
        reason: Reason,
        hint: str | None = None,
        code: str | None = None,
        refused: bool = False,
    ) -> None:
        super().__init__(f"A storage operation failed ({reason}).")
        self.reason = Reason(reason)
        self.hint = hint
        self.backend_code = code
        # True when the backend refused the request outright, so it wrote nothing.
        self.refused = refused


# -- account lifecycle: anonymous accounts, mailed links, passwords ----------------------------


class LinkInvalid(AuthError):
    status, code = 400, "LINK_INVALID"
    message = "This link is invalid: it was already used, it has expired, or it is unknown."


class EmailNotConfirmed(AuthError):
    status, code = 403, "EMAIL_NOT_CONFIRMED"
    message = "Confirm your email address first: use the link we sent you, or ask for a new one."


class NotAnonymous(AuthError):
    status, code = 409, "NOT_ANONYMOUS"
    message = "This account already has an email address and password."


class UpgradeFailed(AuthError):
    """An anonymous account's upgrade failed after it started writing (like SignupFailed)."""

    status, code = 500, "UPGRADE_FAILED"

    def __init__(self, step: str, reason: Reason | str, compensated: bool) -> None:
        outcome = (
            "Nothing was changed; retry."
            if compensated
            else ("The profile may show the new email while the account stays anonymous; retry.")
        )
        details = {"step": step, "reason": str(reason), "compensated": compensated}
        text = f"The account could not be upgraded: step {step} failed ({reason}). {outcome}"
        super().__init__(text, details)


def envelope_ok(data: Any) -> dict[str, Any]:
    return {"success": True, "data": data}


def envelope_error(err: AuthError, request_id: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": err.code, "message": err.message, "request_id": request_id}
    if err.details:
        body["details"] = err.details
    return {"success": False, "error": body}


_HTTP_TO_ERROR: dict[int, type[AuthError]] = {
    400: BadRequest,
    404: NotFound,
    405: MethodNotAllowed,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: ValidationFailed,
    429: RateLimited,
}


def from_http_exception(exc: Any) -> AuthError:
    """Map a werkzeug HTTPException (or flask-smorest's abort) onto our hierarchy."""
    status = getattr(exc, "code", 500) or 500
    cls = _HTTP_TO_ERROR.get(status)
    if cls is None:
        err = InternalError() if status >= 500 else AuthError(getattr(exc, "description", None))
        if status < 500:
            err.status, err.code = status, "HTTP_" + str(status)
        return err
    if cls is ValidationFailed:
        messages = getattr(exc, "data", {}).get("messages", {}) if hasattr(exc, "data") else {}
        # webargs nests messages by location ({"json": {...}}); the client wants field -> messages.
        if isinstance(messages, dict) and len(messages) == 1 and "json" in messages:
            messages = messages["json"]
        return ValidationFailed(details=messages if isinstance(messages, dict) else None)
    return cls()


# -- account lifecycle: closing accounts and the admin API ----------------------------------------


class Forbidden(AuthError):
    status, code = 403, "FORBIDDEN"
    message = "This token may not do that: the admin API needs the admin role or the admin key."


class ReauthenticationRequired(AuthError):
    status, code = 401, "REAUTHENTICATION_REQUIRED"
    message = "Confirm with your current password (or log in again and retry within minutes)."


class DeletionFailed(AuthError):
    """Closing an account failed before its identity went: nothing was removed."""

    status, code = 500, "DELETION_FAILED"
    message = "The account could not be closed."

    def __init__(self, step: str, reason: Reason | str, hint: str | None = None) -> None:
        details: dict[str, Any] = {"step": step, "reason": str(reason), "removed": False}
        if hint:
            details["hint"] = hint
        super().__init__(
            f"The account could not be closed: step {step} failed ({reason}). Nothing was "
            "removed; its sessions were ended, so log in again to retry.",
            details,
        )
