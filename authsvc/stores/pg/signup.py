"""TransactionalSignup: one signup's writes as one transaction, when both tables share a database.

Undoing is a rollback; the server rolls an open transaction back by itself if we die. Only the
COMMIT can leave the outcome unknown (its reply lost with the connection): then the rows are read
back on another connection before anyone answers (stores/units.py).
"""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

from authsvc.errors import AuthError, DatabaseUnavailable
from authsvc.stores import IdentityStore, NewProfile, Outcome, Profile, ProfileStore
from authsvc.stores.pg import identities, profiles
from authsvc.stores.pg.database import Database
from authsvc.stores.pg.held import HeldTransaction
from authsvc.stores.units import identity_missing, read_back

log = logging.getLogger("authsvc.stores.pg")


class TransactionalSignup(HeldTransaction):
    def __init__(
        self, db: Database, ids: IdentityStore, profile_store: ProfileStore, user_id: UUID
    ) -> None:
        super().__init__(db)
        self.identities = ids
        self.profiles = profile_store
        self.user_id = user_id
        self._commit_sent = False
        self._finished = False

    def __enter__(self) -> TransactionalSignup:
        self._begin()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if not self._finished:
            self.compensate()
        self._release()

    def create_identity(
        self, email: str, password_hash: str, signup_profile: dict[str, Any]
    ) -> None:
        params = identities.insert_params(self.user_id, email, password_hash, signup_profile)
        if self._run(identities.INSERT, params).rowcount != 1:
            raise identities.no_row_written()

    def create_anonymous_identity(self) -> UUID:
        if self._run(identities.INSERT_ANONYMOUS, (self.user_id,)).rowcount != 1:
            raise identities.no_row_written()
        return self.user_id

    def insert_profile(self, profile: NewProfile) -> Profile | None:
        return profiles.to_profile(
            self._run(profiles.INSERT, profiles.insert_params(profile)).fetchone()
        )

    def complete(self) -> None:
        if self._run(identities.MARK_COMPLETE, (self.user_id,)).rowcount != 1:
            raise identity_missing()
        self._commit_sent = True
        try:
            self._run("COMMIT", None)
        except DatabaseUnavailable:
            # The COMMIT was sent and its reply lost: it may have landed. Read back.
            if read_back(self.identities, self.profiles, self.user_id) is not Outcome.WHOLE:
                raise
        self._finished = True

    def compensate(self) -> Outcome:
        """Roll back; after a COMMIT whose reply was lost, delete by id and read back."""
        self._finished = True
        if not self._commit_sent:
            self._rollback()
            return Outcome.GONE
        try:
            self.identities.delete_pending(self.user_id)  # its profile goes by the foreign key
        except AuthError as exc:
            log.error(
                "compensation could not delete the identity after a lost COMMIT; "
                "`authsvc reconcile` finds it if it is pending",
                extra={"user_id": str(self.user_id), "error": repr(exc)},
            )
            return Outcome.REMAINS
        return read_back(self.identities, self.profiles, self.user_id)
