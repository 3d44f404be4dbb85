"""Closing an account: its sessions end at once, then both of its rows go, whole or gone.

The order, and why it is safe whatever fails:

1. Every session of the user is revoked. If that fails, nothing else is tried.
2. The identity and the profile are removed (AccountAdmin.remove): in one database one
   transaction, so either both go or neither; across two databases (or Supabase) the identity
   first. Once the identity is gone nobody can sign in again, so the account is closed; a
   failure after that leaves at most a profile without an identity, which cannot sign in and
   which `authsvc reconcile --repair` removes. The identity failing to go removes nothing
   (DELETION_FAILED names the step; DATABASE_UNAVAILABLE when the database cannot be reached).

The user's own request must prove it is the user: the current password, or a login within the
last FRESH_LOGIN_SECONDS (a stolen access token alone is not enough). An anonymous account has
no password; its session is its proof. An admin closes any account (services/admin.py).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from uuid import UUID

from authsvc.errors import InvalidCredentials, ReauthenticationRequired, TokenRevoked
from authsvc.services import audit, sessions
from authsvc.services.accounts import Context
from authsvc.stores import Identity, Stores

log = logging.getLogger("authsvc.closing")

FRESH_LOGIN_SECONDS = 300


def close(stores: Stores, origin: audit.Origin, user_id: UUID, reason: str) -> bool:
    """End the user's sessions, then remove both rows (see the module docstring). True when both
    rows are gone; False when only the profile remains, for reconcile."""
    revoked = stores.accounts.revoke_sessions(user_id, reason)
    whole = stores.accounts.remove(user_id)
    audit.record(
        stores,
        origin,
        audit.USER_DELETED,
        user_id,
        reason=reason,
        sessions_revoked=revoked,
        profile_removed=whole,
    )
    if whole:
        log.info("account closed", extra={"user_id": str(user_id), "reason": reason})
    else:
        log.error(
            "account closed, but its profile remains until `authsvc reconcile --repair`",
            extra={"user_id": str(user_id), "reason": reason},
        )
    return whole


def confirm_it_is_the_user(
    ctx: Context, identity: Identity, session_id: UUID, password: str | None
) -> None:
    """The current password when one is given; otherwise a fresh login (or an anonymous
    account, which has no password)."""
    if password is not None:
        checked = sessions.authenticate(ctx.stores, ctx.hasher, identity.email, password)
        if checked is None or checked.id != identity.id:
            audit.record(
                ctx.stores, ctx.origin, audit.LOGIN_FAILED, identity.id, during="close_account"
            )
            raise InvalidCredentials("The current password is not right.")
        return
    if identity.is_anonymous:
        return
    started = ctx.stores.accounts.session_started(session_id)
    if started is None or datetime.now(UTC) - started > timedelta(seconds=FRESH_LOGIN_SECONDS):
        raise ReauthenticationRequired()


def close_own_account(
    ctx: Context, user_id: UUID, session_id: UUID, password: str | None = None
) -> bool:
    """The signed-in user closes their account (DELETE /api/v1/auth/me, the account page)."""
    identity = ctx.stores.identities.get(user_id)
    if identity is None:
        raise TokenRevoked("The account this token belongs to no longer exists.")
    confirm_it_is_the_user(ctx, identity, session_id, password)
    return close(ctx.stores, ctx.origin, user_id, "account_deleted")
