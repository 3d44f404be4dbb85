"""Anonymous accounts: created through the signup saga, upgraded in place, purged when idle.

- Creating one is the signup saga without an email or password: identity (pending) -> profile
  RETURNING -> verify -> complete, with the same guarantee and the same SIGNUP_FAILED details.
  In Supabase mode the identity's id is Supabase Auth's (an anonymous sign-in picks it), so
  the saga learns it from the first step; a reply lost there leaves an anonymous user that is
  never marked complete, which reconcile counts as an unfinished signup and removes.
- Upgrading gives the same id an email and password, keeping the profile and everything keyed
  on the id: the profile's email (and username) first, then the identity, whose update is the
  act that makes it happen (stores.UpgradeUnit: one transaction in one database, compensation
  otherwise). Every earlier session ends; the answer carries a fresh one.
- An anonymous account with no sign-in and no session activity for
  AUTHSVC_ANONYMOUS_MAX_IDLE_DAYS is removed, both rows: the identity first (its sessions and
  tokens with it), then the profile, so a failure between leaves at worst a profile without an
  identity, which cannot sign in and which `authsvc reconcile --repair` removes.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

from authsvc import passwords
from authsvc.errors import (
    AccountGone,
    AuthError,
    DatabaseUnavailable,
    EmailTaken,
    NotAnonymous,
    Reason,
    StorageError,
    TokenRevoked,
    UpgradeFailed,
    WeakPassword,
)
from authsvc.services import audit, links, sessions, signup
from authsvc.services.accounts import Context, _retried
from authsvc.services.signup import ProfileMismatch
from authsvc.stores import LifecycleStore, NewProfile, Outcome, Profile, Stores

if TYPE_CHECKING:
    from authsvc.config import Settings

log = logging.getLogger("authsvc.anonymous")

PURGE_BATCH = 500


def _lifecycle(stores: Stores) -> LifecycleStore:
    assert stores.lifecycle is not None, "these stores have no account lifecycle"
    return stores.lifecycle


def _verify(row: Profile | None, user_id: UUID) -> Profile:
    if row is None:
        raise ProfileMismatch(Reason.NO_ROW_RETURNED)
    if row.id != user_id:
        raise ProfileMismatch(Reason.ID_MISMATCH)
    if row.email is not None:
        raise ProfileMismatch(Reason.EMAIL_MISMATCH)
    return row


def create_account(stores: Stores) -> Profile:
    """The signup saga for an account with no email and no password (module docstring)."""
    user_id = uuid4()
    step = "identity_create"
    with stores.signup(user_id) as unit:
        try:
            user_id = unit.create_anonymous_identity()
            step = "profile_insert"
            row = unit.insert_profile(NewProfile(user_id, None))
            step = "profile_verify"
            profile = _verify(row, user_id)
            step = "complete"
            unit.complete()
        except Exception as exc:
            outcome = unit.compensate()
            if outcome is Outcome.WHOLE and step == "complete":
                return profile
            raise signup._failure(exc, step, outcome is Outcome.GONE, user_id) from exc
    log.info("anonymous account created", extra={"user_id": str(user_id)})
    return profile


def start(ctx: Context) -> tuple[sessions.User, sessions.Session]:
    """Create an anonymous account and its session. Reading it back and starting the session
    are retried briefly; an account that still gets no session is unreachable and is removed
    with the idle ones."""
    profile = create_account(ctx.stores)
    audit.record(ctx.stores, ctx.origin, audit.SIGNUP, profile.id, anonymous=True)
    user = _retried("reading the user back", lambda: sessions.load_user(ctx.stores, profile.id))
    if user is None:
        raise TokenRevoked("The account was removed right after it was created.")
    session = _retried(
        "starting the session",
        lambda: sessions.start_session(
            ctx.stores, profile.id, ctx.mint, ctx.refresh_ttl, ctx.user_agent
        ),
    )
    return user, session


def _upgrade_failure(exc: Exception, step: str, compensated: bool) -> AuthError:
    if isinstance(exc, ProfileMismatch):
        return UpgradeFailed(step, exc.reason, compensated)
    if isinstance(exc, StorageError):
        return UpgradeFailed(step, exc.reason, compensated)
    if isinstance(exc, DatabaseUnavailable):
        if compensated and not exc.lost:
            return exc
        return UpgradeFailed(step, Reason.CONNECTION_LOST, compensated)
    if isinstance(exc, AuthError) and exc.status < 500:
        return exc
    return UpgradeFailed(step, Reason.UNEXPECTED_ERROR, compensated)


def _closed(stores: Stores, user_id: UUID) -> bool:
    """The identity is gone (read after a failed upgrade found no row to update)."""
    try:
        return stores.identities.get(user_id) is None
    except AuthError:
        return False


def upgrade(
    ctx: Context, user_id: UUID, email: str, password: str, username: str | None = None
) -> tuple[sessions.User, sessions.Session]:
    """Give this anonymous account an email and password under the same id (module
    docstring); every earlier session ends and a fresh one is answered."""
    identity = ctx.stores.identities.get(user_id)
    if identity is None:
        raise TokenRevoked("The account this token belongs to no longer exists.")
    if not identity.is_anonymous:
        raise NotAnonymous()
    reasons = passwords.policy_violations(password, email)
    if reasons:
        raise WeakPassword(details={"password": reasons})
    holder = ctx.stores.identities.find_by_email(email)
    if holder is not None and holder.id != user_id:
        raise EmailTaken()
    hashed = ctx.hasher.hash(password)
    step = "profile_update"
    with _lifecycle(ctx.stores).upgrade(user_id) as unit:
        try:
            row = unit.update_profile(email, username)
            if row is None or row.id != user_id or (row.email or "").lower() != email.lower():
                raise ProfileMismatch(Reason.NO_ROW_RETURNED if row is None else Reason.ID_MISMATCH)
            step = "identity_update"
            unit.upgrade_identity(email, password, hashed)
            step = "complete"
            unit.complete()
        except Exception as exc:
            outcome = unit.compensate()
            err = _upgrade_failure(exc, step, outcome is Outcome.GONE)
            if isinstance(exc, ProfileMismatch | NotAnonymous) and _closed(ctx.stores, user_id):
                err = AccountGone()  # the account was closed under this upgrade: no row left
            log.log(
                logging.ERROR if err.status >= 500 else logging.INFO,
                "upgrade failed",
                exc_info=exc if err.status >= 500 else None,
                extra={"user_id": str(user_id), "step": step, "error_code": err.code},
            )
            raise err from exc
    audit.record(ctx.stores, ctx.origin, audit.USER_UPGRADED, user_id)
    log.info("anonymous account upgraded", extra={"user_id": str(user_id)})
    # The upgrade has landed: what follows is retried briefly rather than failed at once.
    _retried(
        "ending earlier sessions",
        lambda: ctx.stores.sessions.revoke_user_sessions(user_id, "upgraded"),
    )
    links.send_verification(ctx, user_id)
    user = _retried("reading the user back", lambda: sessions.me(ctx.stores, user_id))
    session = _retried(
        "starting the session",
        lambda: sessions.start_session(
            ctx.stores, user_id, ctx.mint, ctx.refresh_ttl, ctx.user_agent
        ),
    )
    return user, session


def purge_idle(stores: Stores, settings: Settings) -> dict[str, Any]:
    """Remove anonymous accounts idle longer than AUTHSVC_ANONYMOUS_MAX_IDLE_DAYS, both rows
    (for `authsvc purge`): {"anonymous_removed": n, "profiles_removed": n}."""
    idle = settings.anonymous_max_idle_days * 86400
    lifecycle = _lifecycle(stores)
    counts = {"anonymous_removed": 0, "profiles_removed": 0}
    while True:
        found = lifecycle.idle_anonymous(idle, PURGE_BATCH)
        if not found:
            return counts
        removed = lifecycle.remove_anonymous(found, idle)
        if removed and not stores.profiles.co_located:
            counts["profiles_removed"] += stores.profiles.delete_many(removed)
        elif removed:
            counts["profiles_removed"] += len(removed)  # by the foreign key, with the identity
        counts["anonymous_removed"] += len(removed)
        if removed:
            log.info("idle anonymous accounts removed", extra={"count": len(removed)})
        if len(found) < PURGE_BATCH or not removed:
            return counts
