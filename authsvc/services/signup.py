"""The signup saga: identity -> profile RETURNING -> verify -> complete, or compensate.

The guarantee: a signup either ends with both rows (an identity in auth.users marked
`complete`, and its profile in public.users with the same id) and a 201, or with an error that
names the failed step and no trace of the account. No session is ever handed to half a user.

A signup passes through these states:

1. nothing: the body is validated and the password hashed before any connection is taken.
2. identity pending: auth.users holds the identity with signup_state = 'pending'. A pending
   identity cannot sign in (sessions.login refuses it), so a crash from here on leaves nothing
   usable behind.
3. profile written: public.users holds a row with the identity's id, inserted with an explicit
   UUID and read back through RETURNING.
4. verified: the row that came back has our id and our email. No row (an RLS policy, a BEFORE
   trigger returning NULL) or another row is a failure, never a silent success.
5. complete: the identity is marked complete; only now is the client told 201.

Any failure in 2-5 runs compensation: with both tables in one database the whole signup is one
transaction and compensation is its rollback; across two databases (or Supabase), each step has
committed and compensation deletes the profile and then the pending identity. If compensation
itself fails (the database went away), the identity simply stays pending: that row is the
durable record of the half-user, and `authsvc reconcile --repair` removes it, with any profile
it has, once it is older than the grace period. It never completes it: a pending identity's
client was never told 201 (it was told the signup failed, or got no answer), so nobody was
promised that account. A process killed at any point leaves the same pending row (or, in one
database, nothing: the server rolls the open transaction back), found and removed the same way.
Conversely, `complete` only succeeds if it finds the pending identity still there, so a signup
whose identity was removed under it fails instead of answering 201 for half a user.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any
from uuid import UUID, uuid4

from authsvc import passwords
from authsvc.errors import (
    AuthError,
    DatabaseUnavailable,
    IdempotencyKeyInFlight,
    IdempotencyKeyReused,
    InternalError,
    Reason,
    SignupFailed,
    StorageError,
    WeakPassword,
)
from authsvc.stores import NewProfile, Outcome, Profile, Stores

log = logging.getLogger("authsvc.signup")


@dataclass(frozen=True)
class SignupData:
    email: str
    password: str
    username: str | None = None
    display_name: str | None = None

    def profile(self, user_id: UUID) -> NewProfile:
        return NewProfile(user_id, self.email, self.username, self.display_name)

    def signup_profile(self) -> dict[str, Any]:
        """What the profile asked for, kept with the identity to recreate a lost profile."""
        return {
            k: v
            for k, v in (("username", self.username), ("display_name", self.display_name))
            if v is not None
        }


class ProfileMismatch(Exception):
    def __init__(self, reason: Reason) -> None:
        super().__init__(str(reason))
        self.reason = reason


def verify_returned(row: Profile | None, user_id: UUID, email: str) -> Profile:
    """The row the insert returned is the one we sent; anything else is a failure."""
    if row is None:
        raise ProfileMismatch(Reason.NO_ROW_RETURNED)
    if row.id != user_id:
        raise ProfileMismatch(Reason.ID_MISMATCH)
    if row.email.lower() != email.lower():
        raise ProfileMismatch(Reason.EMAIL_MISMATCH)
    return row


_HINTS = {
    Reason.NO_ROW_RETURNED: "the insert returned no row: a row-level security policy or a BEFORE "
    "INSERT trigger returning NULL dropped it",
    Reason.ID_MISMATCH: "the row returned carries another id: a trigger rewrote it",
    Reason.EMAIL_MISMATCH: "the row returned carries another email: a trigger rewrote it",
}


def run(stores: Stores, hasher: passwords.Hasher, data: SignupData) -> Profile:
    """Create the identity and its profile, or neither. See the module docstring."""
    reasons = passwords.policy_violations(data.password, data.email)
    if reasons:
        raise WeakPassword(details={"password": reasons})
    user_id = uuid4()
    hashed = hasher.hash(data.password)  # before any connection is taken
    step = "identity_create"
    with stores.signup(user_id) as unit:
        try:
            unit.create_identity(data.email, hashed, data.signup_profile())
            step = "profile_insert"
            row = unit.insert_profile(data.profile(user_id))
            step = "profile_verify"
            profile = verify_returned(row, user_id, data.email)
            step = "complete"
            unit.complete()
        except Exception as exc:
            outcome = unit.compensate()
            if outcome is Outcome.WHOLE and step == "complete":
                # The `complete` reply was lost but it landed: the account is whole.
                log.warning(
                    "signup completed despite a lost reply", extra={"user_id": str(user_id)}
                )
                return profile
            raise _failure(exc, step, outcome is Outcome.GONE, user_id) from exc
    log.info("signup complete", extra={"user_id": str(user_id)})
    return profile


def _failure(exc: Exception, step: str, compensated: bool, user_id: UUID) -> AuthError:
    """409/422 pass through after compensating, and 503 when nothing was ever sent; anything
    else names its step, its reason and whether anything remains."""
    if isinstance(exc, ProfileMismatch):
        err: AuthError = SignupFailed(step, exc.reason, compensated, _HINTS.get(exc.reason))
    elif isinstance(exc, StorageError):
        err = SignupFailed(step, exc.reason, compensated, exc.hint, exc.backend_code)
    elif isinstance(exc, DatabaseUnavailable):
        # Unavailable with nothing left behind: a plain 503 the client retries. A connection
        # lost mid-statement (or a leftover) is a failed step, said with its step.
        if compensated and not exc.lost:
            err = exc
        else:
            err = SignupFailed(step, Reason.CONNECTION_LOST, compensated)
    elif isinstance(exc, AuthError) and exc.status < 500:
        err = exc
    else:
        err = SignupFailed(step, Reason.UNEXPECTED_ERROR, compensated)
    log.log(
        logging.ERROR if err.status >= 500 else logging.INFO,
        "signup failed",
        exc_info=exc if err.status >= 500 else None,
        extra={
            "step": step,
            "error_code": err.code,
            "compensated": compensated,
            "user_id": str(user_id),
            "reason": getattr(err, "details", {}).get("reason"),
        },
    )
    return err


# -- idempotent signup ------------------------------------------------------------------------


def fingerprint(data: SignupData, keys: Sequence[bytes]) -> list[str]:
    """Keyed hashes of the request body, one per key (the current key's first): equal bodies
    match under the same key, a record made before a key rotation matches under the previous
    key, and the stored value reveals nothing about the password."""
    canonical = json.dumps(asdict(data), sort_keys=True, separators=(",", ":")).encode()
    return [hmac.new(key, canonical, hashlib.sha256).hexdigest() for key in keys]


def run_idempotent(
    stores: Stores,
    hasher: passwords.Hasher,
    data: SignupData,
    idempotency_key: str,
    secret: bytes,
    previous_secrets: Sequence[bytes] = (),
) -> tuple[Profile, bool]:
    """`run` once per key: (profile, replayed). A retry with the same key and body gets the
    first answer (the same user, or the same client error); another body is refused."""
    prints = fingerprint(data, [secret, *previous_secrets])
    record = stores.idempotency.claim(idempotency_key, prints[0])
    if record is not None:
        if record.fingerprint not in prints:
            raise IdempotencyKeyReused()
        if record.status is None:  # still in flight, claimed under a previous key
            raise IdempotencyKeyInFlight()
        if record.status == 201 and record.user_id is not None:
            profile = stores.profiles.get(record.user_id)
            if profile is not None:
                return profile, True
        replayed = AuthError.restore(record.response or {})
        raise replayed if replayed.status < 500 else InternalError()
    try:
        profile = run(stores, hasher, data)
    except AuthError as exc:
        if exc.status < 500:
            _bookkeeping(
                stores.idempotency.finish,
                idempotency_key,
                exc.status,
                None,
                {"code": exc.code, "message": exc.message, "details": exc.details},
            )
        else:
            # A server-side failure is not an answer worth replaying: let a retry run again.
            _bookkeeping(stores.idempotency.release, idempotency_key)
        raise
    except BaseException:
        _bookkeeping(stores.idempotency.release, idempotency_key)
        raise
    stores.idempotency.finish(idempotency_key, 201, profile.id, None)
    return profile, False


def _bookkeeping(step: Any, *args: Any) -> None:
    """Record the outcome of a failed signup on its key, without letting a failure to record
    it (the database went away) replace the error the client must see. An unrecorded key stays
    claimed; a retry may take it over once it counts as abandoned."""
    try:
        step(*args)
    except AuthError as exc:
        log.warning("idempotency key not updated", extra={"error": repr(exc)})
