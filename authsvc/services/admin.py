"""What an operator does to accounts, through the admin API or `authsvc users ...`.

Authorisation is the entrypoint's business (the admin role, or AUTHSVC_ADMIN_KEY); these
functions take the Origin that says who acts, and record an audit event for every change.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from authsvc.errors import NotFound, ValidationFailed
from authsvc.services import audit, closing
from authsvc.stores import ADMIN_ROLE, Account, AuditEvent, Stores

log = logging.getLogger("authsvc.admin")

MAX_BAN_SECONDS = 10 * 365 * 24 * 3600
MAX_PAGE = 100
ROLES = frozenset({ADMIN_ROLE})


def _no_user(user_id: UUID | str) -> NotFound:
    return NotFound(f"There is no user {user_id}.")


def is_admin(stores: Stores, user_id: UUID) -> bool:
    """The user's identity holds the admin role."""
    roles = stores.accounts.roles(user_id)
    return roles is not None and ADMIN_ROLE in roles


def list_accounts(
    stores: Stores, search: str | None, cursor: str | None, limit: int
) -> tuple[list[Account], str | None]:
    """Accounts newest first, by email search, one page at a time."""
    return stores.accounts.page(search or None, cursor, max(1, min(limit, MAX_PAGE)))


def show(stores: Stores, user_id: UUID) -> Account:
    """Both rows of the user and whether they agree; NotFound when neither exists."""
    account = stores.accounts.get(user_id)
    if account is None:
        raise _no_user(user_id)
    return account


def find(stores: Stores, who: str) -> Account:
    """The account with this id or (case-insensitively) this email."""
    try:
        return show(stores, UUID(who))
    except ValueError:
        pass
    identity = stores.identities.find_by_email(who.strip())
    if identity is None:
        raise _no_user(who)
    return show(stores, identity.id)


def ban(stores: Stores, origin: audit.Origin, user_id: UUID, seconds: int) -> Account:
    """Ban for `seconds` from now, then end every session at once."""
    if not 1 <= seconds <= MAX_BAN_SECONDS:
        raise ValidationFailed(
            details={"duration_seconds": [f"Use 1 to {MAX_BAN_SECONDS} seconds."]}
        )
    identity = stores.accounts.set_ban(user_id, seconds)
    if identity is None:
        raise _no_user(user_id)
    revoked = stores.accounts.revoke_sessions(user_id, "banned")
    until = rfc3339(identity.banned_until)  # as the API answers it
    audit.record(
        stores,
        origin,
        audit.USER_BANNED,
        user_id,
        duration_seconds=seconds,
        banned_until=until,
        sessions_revoked=revoked,
    )
    log.warning("user banned", extra={"user_id": str(user_id), "banned_until": until})
    return show(stores, user_id)


def unban(stores: Stores, origin: audit.Origin, user_id: UUID) -> Account:
    """Lift the user's ban."""
    if stores.accounts.set_ban(user_id, None) is None:
        raise _no_user(user_id)
    audit.record(stores, origin, audit.USER_UNBANNED, user_id)
    log.info("user unbanned", extra={"user_id": str(user_id)})
    return show(stores, user_id)


def delete(stores: Stores, origin: audit.Origin, user_id: UUID) -> bool:
    """Close the account as its owner would (services/closing.py); NotFound when neither row
    exists. True when both rows are gone, False when the profile remains for reconcile."""
    show(stores, user_id)
    return closing.close(stores, origin, user_id, "deleted_by_admin")


def revoke_sessions(stores: Stores, origin: audit.Origin, user_id: UUID) -> int:
    """End every session of the user; how many were open."""
    if stores.accounts.roles(user_id) is None:
        raise _no_user(user_id)
    revoked = stores.accounts.revoke_sessions(user_id, "revoked_by_admin")
    audit.record(stores, origin, audit.SESSIONS_REVOKED, user_id, sessions_revoked=revoked)
    return revoked


def set_role(stores: Stores, origin: audit.Origin, user_id: UUID, role: str, held: bool) -> Account:
    """Grant (held=True) or take back a role."""
    if role not in ROLES:
        raise ValidationFailed(details={"role": [f"Use one of: {', '.join(sorted(ROLES))}."]})
    roles = stores.accounts.roles(user_id)
    if roles is None:
        raise _no_user(user_id)
    wanted = roles | {role} if held else roles - {role}
    if wanted != roles:
        stores.accounts.set_roles(user_id, frozenset(wanted))
        kind = audit.ROLE_GRANTED if held else audit.ROLE_REVOKED
        audit.record(stores, origin, kind, user_id, role=role)
    return show(stores, user_id)


def events(
    stores: Stores,
    user_id: UUID | None,
    event_type: str | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[AuditEvent], str | None]:
    """The audit log, newest first."""
    return audit.page(stores, user_id, event_type, cursor, max(1, min(limit, MAX_PAGE)))


# -- plain values for the API and the command line ---------------------------------------------


def rfc3339(value: datetime | None) -> str | None:
    """A time as RFC 3339 in UTC ("...Z"), as the API answers times."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def account_dict(account: Account) -> dict[str, Any]:
    """An account as the admin API lists it: the user, with what only authsvc writes."""
    identity, profile = account.identity, account.profile
    assert identity is not None
    banned = identity.banned_until is not None and identity.banned_until > datetime.now(UTC)
    return {
        "id": str(account.id),
        "email": identity.email,
        "username": profile.username if profile else None,
        "display_name": profile.display_name if profile else None,
        "email_confirmed": identity.email_confirmed_at is not None,
        "is_anonymous": identity.is_anonymous,
        "created_at": rfc3339(identity.created_at or (profile.created_at if profile else None)),
        "last_sign_in_at": rfc3339(account.last_sign_in_at),
        "banned": banned,
        "banned_until": rfc3339(identity.banned_until) if banned else None,
        "roles": sorted(account.roles),
        "signup_state": identity.signup_state,
        "has_profile": profile is not None,
    }


def detail_dict(account: Account) -> dict[str, Any]:
    """Both rows of one id, and whether they agree."""
    identity, profile = account.identity, account.profile
    return {
        "user": account_dict(account) if identity is not None else None,
        "identity": None
        if identity is None
        else {
            "id": str(identity.id),
            "email": identity.email,
            "signup_state": identity.signup_state,
            "is_anonymous": identity.is_anonymous,
            "email_confirmed_at": rfc3339(identity.email_confirmed_at),
            "banned_until": rfc3339(identity.banned_until),
            "last_sign_in_at": rfc3339(account.last_sign_in_at),
            "created_at": rfc3339(identity.created_at),
            "roles": sorted(account.roles),
        },
        "profile": None
        if profile is None
        else {
            "id": str(profile.id),
            "email": profile.email,
            "username": profile.username,
            "display_name": profile.display_name,
            "created_at": rfc3339(profile.created_at),
            "updated_at": rfc3339(profile.updated_at),
        },
        "consistent": account.consistent,
    }


def event_dict(event: AuditEvent) -> dict[str, Any]:
    """An audit event as the admin API answers it."""
    return {
        "id": event.id,
        "type": event.type,
        "user_id": str(event.user_id) if event.user_id else None,
        "actor": event.actor,
        "actor_id": str(event.actor_id) if event.actor_id else None,
        "request_id": event.request_id,
        "ip": event.ip,
        "user_agent": event.user_agent,
        "at": rfc3339(event.at),
        "details": event.details,
    }
