"""Closing an account where its two halves share no transaction (two Postgres databases, or
Supabase Auth and PostgREST): the identity first, then the profile.

Once the identity is gone nobody can sign in, so that is the point of no return. What a failure
after it can leave is a profile without an identity: it cannot sign in, and `authsvc reconcile
--repair` removes it. The other order could leave a complete identity without a profile, which
login and reconcile would give a new profile: the account would come back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from uuid import UUID

from authsvc.errors import AuthError, DatabaseUnavailable, DeletionFailed, StorageError

log = logging.getLogger("authsvc.stores.removal")

PROFILE_ATTEMPTS = 3
PROFILE_PAUSE = 0.2


def remove_in_order(
    user_id: UUID,
    delete_identity: Callable[[UUID], bool],
    identity_exists: Callable[[UUID], bool],
    delete_profile: Callable[[UUID], int],
) -> bool:
    """Delete the identity, then the profile (AccountAdmin.remove's contract)."""
    try:
        delete_identity(user_id)
    except DatabaseUnavailable as exc:
        # The delete may have reached the server with its answer lost: look before answering.
        if not exc.sent or _identity_remains(user_id, identity_exists):
            raise
    except StorageError as exc:
        raise DeletionFailed("identity_delete", exc.reason, exc.hint) from exc
    for attempt in range(1, PROFILE_ATTEMPTS + 1):
        try:
            delete_profile(user_id)
            return True
        except AuthError as exc:
            log.warning(
                "could not delete the profile of a removed identity",
                extra={"user_id": str(user_id), "error": repr(exc), "attempt": attempt},
            )
            if attempt < PROFILE_ATTEMPTS:
                time.sleep(PROFILE_PAUSE)
    log.error(
        "the identity is removed but its profile remains; `authsvc reconcile --repair` removes it",
        extra={"user_id": str(user_id)},
    )
    return False


def _identity_remains(user_id: UUID, identity_exists: Callable[[UUID], bool]) -> bool:
    """True unless the identity is provably gone."""
    try:
        return identity_exists(user_id)
    except AuthError:
        return True
