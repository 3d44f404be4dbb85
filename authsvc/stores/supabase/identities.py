"""Identities as Supabase Auth users, through supabase-py's admin API (service role key).

An identity is created with our UUID and the `authsvc_signup: pending` marker in app_metadata,
which only the service role can change; it turns `complete` once the profile is verified.
Users created outside authsvc carry no marker and count as complete. What the signup asked for
(username, display name) is kept in app_metadata too: user_metadata is the user's to edit, so
nothing is ever recreated from it.

Passwords: the saga hashes before any request is made, and Supabase Auth accepts that argon2id
hash as `password_hash`, so the plain password goes to Supabase only when someone signs in, and
then Supabase Auth checks it (SupabasePasswordCheck).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
from supabase_auth.errors import AuthError as GoTrueError
from supabase_auth.types import User

from authsvc.errors import DatabaseUnavailable, RateLimited, Reason, StorageError
from authsvc.stores import COMPLETE, PENDING, Identity, Profile
from authsvc.stores.supabase.clients import SupabaseClients
from authsvc.stores.supabase.errors import auth_error

log = logging.getLogger("authsvc.stores.supabase")

# app_metadata keys: where a signup stands (PENDING or COMPLETE), and what it asked for.
SIGNUP_MARK = "authsvc_signup"
SIGNUP_PROFILE = "authsvc_profile"
ANONYMOUS_MARK = "authsvc_anonymous"  # False once authsvc upgraded an anonymous user
USERS_PER_PAGE = 1000  # auth.admin.list_users page size
SCAN_BATCH = 10000


def timestamp(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def signup_state(user: User) -> str:
    """Where this user's signup stands; users created outside authsvc count as complete,
    except anonymous ones: an anonymous user is complete only once authsvc marked it so (its
    id is Supabase Auth's, known only from a reply that can be lost)."""
    mark = (user.app_metadata or {}).get(SIGNUP_MARK)
    if mark == PENDING or (mark != COMPLETE and user.is_anonymous):
        return PENDING
    return COMPLETE


def is_anonymous(user: User) -> bool:
    """authsvc's word first: Supabase Auth keeps an upgraded user anonymous until its email is
    confirmed through the admin API, which would confirm it without proof."""
    mark = (user.app_metadata or {}).get(ANONYMOUS_MARK)
    return mark if isinstance(mark, bool) else user.is_anonymous


def to_identity(user: User) -> Identity:
    asked = (user.app_metadata or {}).get(SIGNUP_PROFILE)
    anonymous = is_anonymous(user)
    return Identity(
        id=UUID(user.id),
        email=user.email or (None if anonymous else ""),
        password_hash=None,  # held by Supabase Auth, never returned
        is_anonymous=anonymous,
        email_confirmed_at=user.email_confirmed_at,
        banned_until=timestamp(user.banned_until),
        signup_state=signup_state(user),
        created_at=user.created_at,
        signup_profile=asked if isinstance(asked, dict) else {},
    )


def _not_found(exc: StorageError) -> bool:
    return exc.reason is Reason.NOT_FOUND


class SupabaseIdentities:
    """IdentityStore over Supabase Auth's admin API."""

    def __init__(
        self,
        clients: SupabaseClients,
        email_confirm: bool,
        id_for_email: Callable[[str], UUID | None],
    ) -> None:
        self.clients = clients
        self.email_confirm = email_confirm
        # An indexed way from an email to an id (the profiles), tried before paging all users.
        self._id_for_email = id_for_email

    def create(
        self, user_id: UUID, email: str, password_hash: str | None, signup_profile: dict[str, Any]
    ) -> None:
        attributes: dict[str, Any] = {
            "id": str(user_id),
            "email": email,
            "email_confirm": self.email_confirm,
            "user_metadata": signup_profile,
            "app_metadata": {SIGNUP_MARK: PENDING, SIGNUP_PROFILE: signup_profile},
        }
        if password_hash is not None:
            # Supabase Auth verifies argon2id hashes itself; see the module docstring.
            attributes["password_hash"] = password_hash
        self.clients.admin_call(lambda admin: admin.create_user(attributes))

    def create_anonymous(self, user_id: UUID) -> UUID:
        """Supabase Auth's admin API creates no anonymous user and takes no id for one: an
        anonymous sign-in on a fresh anon-key client creates it, under an id Supabase Auth
        picks (so `user_id` is not used), and its Supabase session is revoked at once."""
        client = self.clients.anon()
        try:
            response = client.auth.sign_in_anonymously({"options": {"data": {}}})
        except GoTrueError as exc:
            if exc.code == "anonymous_provider_disabled":
                raise StorageError(
                    Reason.AUTH_REFUSED,
                    "anonymous sign-ins are disabled in this Supabase project: enable them "
                    "under Authentication -> Sign In / Providers",
                    exc.code,
                    refused=True,
                ) from exc
            raise auth_error(exc) from exc
        if response.user is None:
            raise StorageError(Reason.UNEXPECTED_RESPONSE, "no user in Supabase Auth's reply")
        _sign_out(client)
        return UUID(response.user.id)

    def mark_complete(self, user_id: UUID) -> bool:
        try:
            self.clients.admin_call(
                lambda admin: admin.update_user_by_id(
                    str(user_id), {"app_metadata": {SIGNUP_MARK: COMPLETE}}
                )
            )
        except StorageError as exc:
            if _not_found(exc):
                return False
            raise
        return True

    def delete_pending(self, user_id: UUID) -> bool:
        """Delete a signup's own identity (its profile goes with it through the foreign key).
        The admin API cannot delete conditionally; a signup only ever deletes the id it
        created, which nobody was told about."""
        try:
            self.clients.admin_call(lambda admin: admin.delete_user(str(user_id)))
        except StorageError as exc:
            if _not_found(exc):
                return False
            raise
        return True

    def _user(self, user_id: UUID) -> User | None:
        try:
            return self.clients.admin_call(lambda admin: admin.get_user_by_id(str(user_id))).user
        except StorageError as exc:
            if _not_found(exc):
                return None
            raise

    def get(self, user_id: UUID) -> Identity | None:
        user = self._user(user_id)
        return to_identity(user) if user is not None else None

    def find_by_email(self, email: str) -> Identity | None:
        """Through the profile first (one indexed read), then by paging the users, which also
        finds identities that have no profile."""
        found = self._id_for_email(email)
        if found is not None:
            identity = self.get(found)
            if identity is not None and (identity.email or "").lower() == email.lower():
                return identity
        for user in self._users():
            if (user.email or "").lower() == email.lower():
                return to_identity(user)
        return None

    def find_with_profile(self, email: str) -> tuple[Identity | None, Profile | None, bool]:
        """The profiles are in PostgREST, not here."""
        return self.find_by_email(email), None, False

    def get_with_profile(self, user_id: UUID) -> tuple[Identity | None, Profile | None, bool]:
        """The profiles are in PostgREST, not here."""
        return self.get(user_id), None, False

    def set_password_hash(self, user_id: UUID, new_hash: str, old_hash: str) -> bool:
        """Supabase Auth keeps and upgrades its own hashes."""
        return False

    def record_sign_in(self, user_id: UUID) -> None:
        """Supabase Auth records last_sign_in_at itself on every password sign-in."""

    def _users(self) -> Iterator[User]:
        """Every Supabase Auth user, page by page, until an empty page. The admin API pages
        by offset (newest first): a user deleted meanwhile can shift another past us, which
        the next reconcile run picks up."""
        seen: set[str] = set()
        previous: list[str] = []
        page = 1
        while True:
            users = self.clients.admin_call(
                lambda admin, page=page: admin.list_users(page=page, per_page=USERS_PER_PAGE)
            )
            ids = [u.id for u in users]
            if not ids or ids == previous:  # the end, or a server that ignores `page`
                return
            yield from (u for u in users if u.id not in seen)
            seen.update(ids)
            previous = ids
            page += 1

    # -- reconcile primitives -------------------------------------------------------------------

    def scan(self, grace_seconds: int) -> Iterator[list[tuple[str, str, bool]]]:
        """The admin API neither sorts by id nor filters by age: read every user, then sort."""
        cutoff = datetime.now(UTC) - timedelta(seconds=grace_seconds)
        rows = sorted(
            (str(UUID(u.id)), signup_state(u), u.created_at < cutoff) for u in self._users()
        )
        for start in range(0, len(rows), SCAN_BATCH):
            yield rows[start : start + SCAN_BATCH]

    def present(self, ids: list[UUID]) -> set[UUID]:
        return {i for i in ids if self._user(i) is not None}

    def remove_pending(self, ids: list[UUID], grace_seconds: int) -> tuple[list[UUID], int | None]:
        """Each user is re-read right before it is deleted: still pending, still old enough."""
        cutoff = datetime.now(UTC) - timedelta(seconds=grace_seconds)
        removed = []
        for user_id in ids:
            user = self._user(user_id)
            if user is None or signup_state(user) != PENDING or user.created_at >= cutoff:
                continue
            if self.delete_pending(user_id):
                removed.append(user_id)
        return removed, None  # the profiles are PostgREST's: the caller removes them

    def signup_profiles(self, ids: list[UUID]) -> list[Identity]:
        found = (self.get(i) for i in ids)
        return [i for i in found if i is not None and i.signup_state == COMPLETE]


class SupabasePasswordCheck:
    """RemotePasswordCheck: Supabase Auth checks the password, on a fresh anon-key client; the
    Supabase session it opens is revoked at once, since authsvc issues its own."""

    def __init__(
        self, clients: SupabaseClients, find: Callable[[str], Identity | None] | None = None
    ) -> None:
        self.clients = clients
        self._find = find

    def check(self, email: str, password: str) -> Identity | None:
        client = self.clients.anon()
        try:
            response = client.auth.sign_in_with_password({"email": email, "password": password})
        except GoTrueError as exc:
            err = auth_error(exc)
            if isinstance(err, RateLimited | DatabaseUnavailable):
                raise err from exc
            if isinstance(err, StorageError) and err.reason in (
                Reason.AUTH_SERVER_ERROR,
                Reason.AUTH_KEY_REJECTED,
            ):
                raise err from exc
            if exc.code == "email_not_confirmed" and self._find is not None:
                # Supabase Auth says so only after the password matched (token.go): the
                # password is right, and whether an unconfirmed address may sign in is
                # authsvc's rule (AUTHSVC_REQUIRE_EMAIL_CONFIRMATION), not Supabase's.
                return self._find(email)
            # invalid_credentials, and user_banned, which Supabase Auth answers before it looks
            # at the password: telling it apart would reveal a ban to anyone with the email.
            return None
        if response.user is None:
            return None
        _sign_out(client)
        return to_identity(response.user)


def _sign_out(client: Any) -> None:
    """Revoke the Supabase session a sign-in opened on `client` (authsvc issues its own)."""
    try:
        client.auth.sign_out({"scope": "local"})
    except (GoTrueError, httpx.HTTPError) as exc:
        log.info("could not revoke the Supabase session of a sign-in", extra={"error": repr(exc)})
