"""An anonymous account's upgrade across two stores that share no transaction (split Postgres,
Supabase): the profile is written first, the identity last.

The identity's update is the one act that makes the upgrade happen (login by email and password
works from then on), so it comes last and compensation only ever has the profile to put back.
If even that fails, or the identity's reply was lost and nobody can tell whether it landed, the
profile keeps the new email while the answer says `compensated: false`; the account itself is
what the identity says (anonymous, or upgraded), and the next upgrade rewrites the profile.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol
from uuid import UUID

from authsvc.errors import AuthError, DatabaseUnavailable
from authsvc.stores import Outcome, Profile

log = logging.getLogger("authsvc.stores.upgrades")


class UpgradeSides(Protocol):
    """What one backend offers an upgrade: the profile's contact fields and the identity."""

    def profile_contact(self, user_id: UUID) -> tuple[str | None, str | None] | None:
        """The profile's (email, username), or None when there is no profile."""

    def set_profile_contact(
        self, user_id: UUID, email: str, username: str | None
    ) -> Profile | None:
        """Set the email (and the username when not None); the row, or None."""

    def restore_profile_contact(
        self, user_id: UUID, email: str | None, username: str | None, written: str
    ) -> None:
        """Put (email, username) back, unless someone changed the email from `written` since."""

    def upgrade_identity(
        self, user_id: UUID, email: str, password: str, password_hash: str
    ) -> None: ...

    def upgraded(self, user_id: UUID, email: str) -> bool:
        """Read back: the identity is no longer anonymous and holds `email`."""


class CompensatingUpgrade:
    def __init__(self, sides: UpgradeSides, user_id: UUID) -> None:
        self.sides = sides
        self.user_id = user_id
        self._previous: tuple[str | None, str | None] | None = None
        self._written: str | None = None
        self._identity_unknown = False
        self._finished = False

    def __enter__(self) -> CompensatingUpgrade:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if not self._finished:
            self.compensate()

    def update_profile(self, email: str, username: str | None) -> Profile | None:
        self._previous = self.sides.profile_contact(self.user_id)
        self._written = email
        return self.sides.set_profile_contact(self.user_id, email, username)

    def upgrade_identity(self, email: str, password: str, password_hash: str) -> None:
        try:
            self.sides.upgrade_identity(self.user_id, email, password, password_hash)
        except DatabaseUnavailable as exc:
            if not exc.sent:
                raise
            try:  # the reply was lost: did it land?
                if self.sides.upgraded(self.user_id, email):
                    return
            except AuthError:
                self._identity_unknown = True
                raise exc from None
            raise

    def complete(self) -> None:
        self._finished = True

    def compensate(self) -> Outcome:
        self._finished = True
        if self._written is None or self._previous is None:
            return Outcome.GONE
        if self._identity_unknown:
            return Outcome.REMAINS
        email, username = self._previous
        try:
            self.sides.restore_profile_contact(self.user_id, email, username, self._written)
        except AuthError as exc:
            log.error(
                "upgrade compensation could not restore the profile; it shows the new email "
                "while the account stays anonymous",
                extra={"user_id": str(self.user_id), "error": repr(exc)},
            )
            return Outcome.REMAINS
        return Outcome.GONE
