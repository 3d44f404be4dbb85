"""The two ways a signup's writes are undone: a rollback, or compensating deletes.

TransactionalSignup: both tables in one Postgres database; the identity, the profile and the
`complete` mark are one transaction, and undoing it is a rollback.

CompensatingSignup: the tables live apart (two Postgres databases, or Supabase Auth and
PostgREST); each write commits on its own, and undoing deletes what was written: the pending
identity first, then the profile only once no identity holds it (so a profile is never taken
from an identity that is complete).

Either way a lost reply (the connection died after the server committed) leaves the outcome
unknown, and the unit reads back before anyone answers: `complete()` returns when the account is
whole after all, and `compensate()` reports what is left (Outcome), never a guess.
"""

from __future__ import annotations

import logging
import time
from typing import Any
from uuid import UUID

from authsvc.errors import AuthError, DatabaseUnavailable, Reason, StorageError
from authsvc.stores import (
    COMPLETE,
    IdentityStore,
    NewProfile,
    Outcome,
    Profile,
    ProfileStore,
)

log = logging.getLogger("authsvc.stores.units")

# How long a lost reply is settled for by reading back (a connection that just died is often
# replaced at once; a database that went away is not back within a second anyway).
READ_BACK_ATTEMPTS = 3
READ_BACK_PAUSE = 0.2


def identity_missing() -> StorageError:
    # Only a pending identity that is still there may answer 201. Across two databases nothing
    # locks it: `authsvc reconcile --repair` with a grace period shorter than this signup may
    # have removed it meanwhile.
    return StorageError(
        Reason.IDENTITY_MISSING,
        "the pending identity was gone when the signup came to complete it (removed by "
        "`authsvc reconcile --repair` or by hand, or a trigger skipped the update)",
    )


def read_back(
    identities: IdentityStore,
    profiles: ProfileStore,
    user_id: UUID,
    identity: bool = True,
    profile: bool = True,
) -> Outcome:
    """Where a signup's rows stand, read from storage: the identity's side and the profile's
    (skip a side where nothing can have been written). REMAINS when nobody could look: a lost
    connection is retried briefly, an unreachable database is not waited for."""
    for attempt in range(1, READ_BACK_ATTEMPTS + 1):
        try:
            found = identities.get(user_id) if identity else None
            row = profiles.get(user_id) if profile else None
        except AuthError as exc:
            log.warning(
                "could not read back a signup's rows",
                extra={"user_id": str(user_id), "error": repr(exc), "attempt": attempt},
            )
            if isinstance(exc, DatabaseUnavailable) and not exc.sent:
                return Outcome.REMAINS
            time.sleep(READ_BACK_PAUSE)
            continue
        if found is None and row is None:
            return Outcome.GONE
        if found is not None and found.signup_state == COMPLETE and row is not None:
            return Outcome.WHOLE
        return Outcome.REMAINS
    return Outcome.REMAINS


class CompensatingSignup:
    """One signup over an identity store and a profile store that do not share a transaction."""

    def __init__(self, identities: IdentityStore, profiles: ProfileStore, user_id: UUID) -> None:
        self.identities = identities
        self.profiles = profiles
        self.user_id = user_id
        self._identity_written = False
        self._profile_attempted = False
        self._finished = False
        self._unknown_id = False  # an anonymous identity may exist under an id we never got

    def __enter__(self) -> CompensatingSignup:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if not self._finished:
            self.compensate()

    def create_identity(
        self, email: str, password_hash: str, signup_profile: dict[str, Any]
    ) -> None:
        # An answer lost on its way back may hide an identity that was created: assume it was,
        # unless the request provably never reached the server.
        self._identity_written = True
        try:
            self.identities.create(self.user_id, email, password_hash, signup_profile)
        except DatabaseUnavailable as exc:
            self._identity_written = exc.sent
            raise
        except StorageError as exc:
            self._identity_written = not exc.refused
            raise
        except AuthError as exc:
            if exc.status < 500:  # a client error (the email is taken): nothing was written
                self._identity_written = False
            raise

    def create_anonymous_identity(self) -> UUID:
        # A backend that picks the id itself (Supabase Auth) answers it only in its reply: a
        # lost reply leaves an identity nobody can name, which stays pending (never complete)
        # until `authsvc reconcile --repair` removes it.
        self._identity_written = True
        try:
            self.user_id = self.identities.create_anonymous(self.user_id)
        except DatabaseUnavailable as exc:
            self._identity_written = self._unknown_id = exc.sent
            raise
        except StorageError as exc:
            self._identity_written = self._unknown_id = not exc.refused
            raise
        except AuthError as exc:
            if exc.status < 500:
                self._identity_written = False
            raise
        return self.user_id

    def insert_profile(self, profile: NewProfile) -> Profile | None:
        self._profile_attempted = True
        try:
            return self.profiles.insert(profile)
        except DatabaseUnavailable as exc:
            self._profile_attempted = exc.sent
            raise

    def complete(self) -> None:
        try:
            marked = self.identities.mark_complete(self.user_id)
        except DatabaseUnavailable as exc:
            if exc.sent and self._settled_whole():
                self._finished = True
                return
            raise
        if not marked:
            raise identity_missing()
        self._finished = True

    def _settled_whole(self) -> bool:
        """The `complete` update's reply was lost: did it land?"""
        return read_back(self.identities, self.profiles, self.user_id) is Outcome.WHOLE

    def compensate(self) -> Outcome:
        """Delete the pending identity, then the profile once no identity holds it; read back."""
        self._finished = True
        if self._unknown_id:
            return Outcome.REMAINS
        if not (self._identity_written or self._profile_attempted):
            return Outcome.GONE
        if self._identity_written:
            try:
                self.identities.delete_pending(self.user_id)
            except AuthError as exc:
                log.error(
                    "compensation could not delete the identity; it stays pending and "
                    "`authsvc reconcile --repair` removes it",
                    extra={"user_id": str(self.user_id), "error": repr(exc)},
                )
                return Outcome.REMAINS
        if self._profile_attempted:
            try:
                if self.identities.get(self.user_id) is None:
                    self.profiles.delete(self.user_id)
            except AuthError as exc:
                log.error(
                    "compensation could not delete the profile; `authsvc reconcile --repair` "
                    "removes it",
                    extra={"user_id": str(self.user_id), "error": repr(exc)},
                )
                return Outcome.REMAINS
        return read_back(
            self.identities,
            self.profiles,
            self.user_id,
            identity=self._identity_written,
            profile=self._profile_attempted,
        )
