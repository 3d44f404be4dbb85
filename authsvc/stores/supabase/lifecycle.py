"""The account lifecycle in Supabase mode: Supabase Auth's admin API for identities, PostgREST
for profiles, and authsvc's own Postgres (DATABASE_URL) for sessions and reset tokens.

- Verification links are Supabase Auth's own: `generate_link` (type signup) makes the token
  (Supabase stores only its hash, and its project setting decides how long it lives), authsvc
  mails a link to its own /verify page carrying it, and `verify_otp` with the token hash spends
  it and confirms the address.
- Reset tokens are authsvc's own (the one_time_tokens table), so a reset link behaves the same
  in every layout; the new password goes to Supabase Auth through the admin API, which takes no
  password hash on update.
- The upgrade writes the profile, then the user (stores/upgrades.py). The admin API leaves the
  user anonymous unless it also confirms the email without proof, so authsvc records the
  upgrade in app_metadata (identities.ANONYMOUS_MARK) and leaves the address unconfirmed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from supabase_auth.errors import AuthError as GoTrueError

from authsvc.errors import AuthError, EmailTaken, NotAnonymous
from authsvc.stores import COMPLETE, Identity, Profile, UpgradeUnit
from authsvc.stores.pg.database import Database
from authsvc.stores.pg.tokens import RESET, PgTokens
from authsvc.stores.supabase.clients import SupabaseClients
from authsvc.stores.supabase.errors import auth_error
from authsvc.stores.supabase.identities import (
    ANONYMOUS_MARK,
    SupabaseIdentities,
    _sign_out,
    is_anonymous,
    signup_state,
)
from authsvc.stores.supabase.profiles import SupabaseProfiles, to_profile
from authsvc.stores.upgrades import CompensatingUpgrade

REVOKE_ALL = (
    "UPDATE authsvc.sessions SET revoked_at = now(), revoked_reason = %s "
    "WHERE user_id = %s AND revoked_at IS NULL"
)
ACTIVE = (
    "SELECT DISTINCT user_id FROM authsvc.sessions WHERE user_id = ANY(%s) "
    "AND coalesce(refreshed_at, created_at) >= now() - make_interval(secs => %s)"
)
# Supabase Auth's answers to a token hash that is not (or no longer) usable.
_LINK_REFUSED = {"otp_expired", "otp_disabled", "validation_failed", "user_not_found"}


class SupabaseUpgradeSides:
    """UpgradeSides over PostgREST (the profile) and the admin API (the user)."""

    def __init__(
        self, clients: SupabaseClients, identities: SupabaseIdentities, profiles: SupabaseProfiles
    ) -> None:
        self.clients = clients
        self.identities = identities
        self.profiles = profiles

    def profile_contact(self, user_id: UUID) -> tuple[str | None, str | None] | None:
        profile = self.profiles.get(user_id)
        return (profile.email, profile.username) if profile else None

    def set_profile_contact(
        self, user_id: UUID, email: str, username: str | None
    ) -> Profile | None:
        changes: dict[str, Any] = {"email": email, "updated_at": datetime.now(UTC).isoformat()}
        if username is not None:
            changes["username"] = username
        response = self.clients.rest_call(lambda t: t.update(changes).eq("id", str(user_id)))
        return to_profile(response.data[0]) if response.data else None

    def restore_profile_contact(
        self, user_id: UUID, email: str | None, username: str | None, written: str
    ) -> None:
        changes = {
            "email": email,
            "username": username,
            "updated_at": datetime.now(UTC).isoformat(),
        }
        self.clients.rest_call(
            lambda t: t.update(changes).eq("id", str(user_id)).eq("email", written)
        )

    def upgrade_identity(
        self, user_id: UUID, email: str, password: str, password_hash: str
    ) -> None:
        # The admin API's update checks no email for duplicates (a clash is a database error
        # there): ask first; two upgrades racing for one address end in a 500, not a duplicate.
        holder = self.identities.find_by_email(email)
        if holder is not None and holder.id != user_id:
            raise EmailTaken()
        user = self.identities._user(user_id)
        if user is None or not is_anonymous(user) or signup_state(user) != COMPLETE:
            raise NotAnonymous()
        attributes = {"email": email, "password": password, "app_metadata": {ANONYMOUS_MARK: False}}
        self.clients.admin_call(lambda admin: admin.update_user_by_id(str(user_id), attributes))

    def upgraded(self, user_id: UUID, email: str) -> bool:
        user = self.identities._user(user_id)
        return (
            user is not None
            and not is_anonymous(user)
            and (user.email or "").lower() == email.lower()
        )


class SupabaseLifecycle:
    """LifecycleStore in Supabase mode."""

    def __init__(
        self,
        clients: SupabaseClients,
        identities: SupabaseIdentities,
        profiles: SupabaseProfiles,
        db: Database,
    ) -> None:
        self.clients = clients
        self.identities = identities
        self.db = db
        self.tokens = PgTokens(db)
        self.sides = SupabaseUpgradeSides(clients, identities, profiles)

    def upgrade(self, user_id: UUID) -> UpgradeUnit:
        return CompensatingUpgrade(self.sides, user_id)

    def change_password(self, user_id: UUID, password: str, password_hash: str) -> bool:
        identity = self.identities.get(user_id)
        if identity is None or identity.is_anonymous or identity.signup_state != COMPLETE:
            return False
        # Supabase Auth first: it may refuse the password by its own policy, and then nothing
        # has changed. Only a lost database between the two leaves old sessions open.
        self.clients.admin_call(
            lambda admin: admin.update_user_by_id(str(user_id), {"password": password})
        )
        self.db.execute(REVOKE_ALL, ("password_changed", user_id))
        return True

    def issue_verification(self, identity: Identity, ttl_seconds: int) -> str | None:
        """Supabase Auth's own token (its OTP lifetime applies, not `ttl_seconds`)."""
        if identity.email is None or identity.email_confirmed_at is not None:
            return None
        params: Any = {"type": "signup", "email": identity.email}
        try:
            link = self.clients.admin_call(lambda admin: admin.generate_link(params))
        except EmailTaken:  # Supabase Auth's answer for an address already confirmed
            return None
        return link.properties.hashed_token

    def confirm_email(self, token: str) -> UUID | None:
        client = self.clients.anon()
        try:
            response = client.auth.verify_otp({"type": "signup", "token_hash": token})
        except GoTrueError as exc:
            if exc.code in _LINK_REFUSED:
                return None
            raise auth_error(exc) from exc
        if response.user is None:
            return None
        _sign_out(client)
        return UUID(response.user.id)

    def issue_reset(self, identity: Identity, ttl_seconds: int) -> str:
        assert identity.email is not None
        return self.tokens.issue(identity.id, RESET, identity.email, ttl_seconds, True)

    def reset_owner(self, token: str) -> UUID | None:
        return self.tokens.owner(RESET, token)

    def reset_password(self, token: str, password: str, password_hash: str) -> UUID | None:
        spent = self.tokens.spend(RESET, token)
        if spent is None:
            return None
        user_id = spent["user_id"]
        identity = self.identities.get(user_id)
        if identity is None or identity.signup_state != COMPLETE:
            return None
        attributes: dict[str, Any] = {"password": password}
        if (identity.email or "").lower() == spent["email"].lower():
            attributes["email_confirm"] = True  # the link reached this address
        try:
            self.clients.admin_call(lambda admin: admin.update_user_by_id(str(user_id), attributes))
        except AuthError:
            self.tokens.unspend(token, spent["used_at"])  # nothing changed: the link still works
            raise
        self.db.execute(REVOKE_ALL, ("password_reset", user_id))
        return user_id

    def _active(self, ids: list[UUID], idle_seconds: int) -> set[UUID]:
        rows = self.db.fetchall(ACTIVE, (ids, idle_seconds))
        return {r["user_id"] for r in rows}

    def _idle(self, user: Any, cutoff: datetime) -> bool:
        last = user.last_sign_in_at or user.created_at
        return is_anonymous(user) and signup_state(user) == COMPLETE and last < cutoff

    def idle_anonymous(self, idle_seconds: int, limit: int) -> list[UUID]:
        cutoff = datetime.now(UTC) - timedelta(seconds=idle_seconds)
        found = [UUID(u.id) for u in self.identities._users() if self._idle(u, cutoff)]
        if not found:
            return []
        active = self._active(found, idle_seconds)
        return [i for i in found if i not in active][:limit]

    def remove_anonymous(self, ids: list[UUID], idle_seconds: int) -> list[UUID]:
        """Each user is re-read, and its sessions looked at, right before it is deleted (its
        profile goes with it by the foreign key in supabase/migrations)."""
        cutoff = datetime.now(UTC) - timedelta(seconds=idle_seconds)
        removed = []
        for user_id in ids:
            user = self.identities._user(user_id)
            if user is None or not self._idle(user, cutoff):
                continue
            if self._active([user_id], idle_seconds):
                continue
            self.clients.admin_call(lambda admin, i=user_id: admin.delete_user(str(i)))
            self.db.execute(REVOKE_ALL, ("user_removed", user_id))
            removed.append(user_id)
        return removed

    def purge_tokens(self) -> int:
        return self.tokens.purge()
