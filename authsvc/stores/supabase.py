"""SupabaseStore: identities in Supabase Auth, profiles behind PostgREST, sessions in Postgres.

Where each thing lives in this mode:

- Identities are Supabase Auth users, written through supabase-py's admin API
  (`auth.admin.*`) on one server-side client built with the service role key, which never
  persists or refreshes a session and never signs anyone in.
- Profiles are rows of `public.users` in the Supabase project (created by the SQL under
  `supabase/`), written through PostgREST with that same client.
- Sessions, refresh tokens and idempotency keys stay authsvc's own, in schema `authsvc` of the
  Postgres at DATABASE_URL (Supabase's own database through its connection string, or any other
  Postgres; with none configured, the embedded one). `migrate()` applies only the "sessions"
  migration set there. They are not behind PostgREST because refresh-token rotation needs row
  locks held across several statements of one transaction, which the REST API cannot express.

The signup unit has no transaction to roll back: each step commits on the Supabase side, so
compensation deletes what was written. The identity is created with our UUID and the
`authsvc_signup: pending` marker in app_metadata, which only the service role can change; it
turns `complete` once the profile is verified. Login treats a pending identity as the saga says
(services/sessions.py), and when compensation itself fails it is the durable record
`authsvc reconcile --repair` removes. Users created outside authsvc carry no marker and count
as complete.

Passwords: the saga hashes before any request is made, and Supabase Auth accepts that argon2id
hash as `password_hash`, so the plain password goes to Supabase only when someone signs in.
Each sign-in runs on a fresh anon-key client, because a sign-in switches its client's later
requests to the user's token.

The service role key is read from the settings and handed to supabase-py; it never appears in a
log line, an error, a `repr` or a response.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any, TypeVar
from uuid import UUID

import httpx
from postgrest.exceptions import APIError
from postgrest.types import ReturnMethod
from supabase import Client, ClientOptions, create_client
from supabase_auth.errors import AuthApiError, AuthWeakPasswordError
from supabase_auth.errors import AuthError as GoTrueError
from supabase_auth.types import User

from authsvc.config import Settings
from authsvc.errors import (
    AuthError,
    DatabaseUnavailable,
    RateLimited,
    StorageError,
)
from authsvc.passwords import Hasher
from authsvc.stores import COMPLETE, PENDING, Drift, Identity, NewProfile, Profile, recreate_profile
from authsvc.stores.pg import Database, apply_migrations, migration_status
from authsvc.stores.pg_sessions import PgSessions
from authsvc.stores.supabase_shapes import (
    REST_SERVICE,
    SIGNUP_MARK,
    auth_error,
    key_problems,
    key_role,
    rest_error,
    signup_state,
    timestamp,
    was_sent,
)
from authsvc.stores.supabase_shapes import identity as to_identity
from authsvc.stores.supabase_shapes import profile as to_profile

log = logging.getLogger("authsvc.stores.supabase")

T = TypeVar("T")

PROFILE_TABLE = "users"
PROFILE_COLUMNS = "id,email,username,display_name,created_at,updated_at"
PROFILE_FIELDS = ("username", "display_name")
MIGRATION_SETS = ["sessions"]
USERS_PER_PAGE = 1000  # auth.admin.list_users page size
PROFILES_PER_PAGE = 1000  # Supabase's default PostgREST max-rows
REQUEST_TIMEOUT = 10.0

# A trigger function that writes the profile itself collides with the saga's insert.
_INSERTS_PROFILE = re.compile(r"insert\s+into\s+(public\s*\.\s*)?\"?users\"?[\s(]", re.I)


def _escape_like(value: str) -> str | None:
    """`value` as an ILIKE pattern matching only itself; None when PostgREST cannot express it
    (it reads `*` as a wildcard and offers no escape for it)."""
    if "*" in value:
        return None
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# -- the signup unit ------------------------------------------------------------------------------


class _SignupUnit:
    """One signup's writes against Supabase; see the module docstring."""

    def __init__(self, store: SupabaseStore, user_id: UUID) -> None:
        self.store = store
        self.user_id = user_id
        self._identity_written = False
        self._profile_attempted = False
        self._finished = False

    def __enter__(self) -> _SignupUnit:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if not self._finished:
            self.compensate()

    def create_identity(self, email: str, password_hash: str, metadata: dict[str, Any]) -> None:
        attributes = {
            "id": str(self.user_id),
            "email": email,
            # Supabase Auth verifies argon2id hashes itself; see the module docstring.
            "password_hash": password_hash,
            "email_confirm": self.store.email_confirm,
            "user_metadata": metadata,
            "app_metadata": {SIGNUP_MARK: PENDING},
        }
        # An answer lost on its way back may hide a user that was created: assume it was.
        self._identity_written = True
        try:
            self.store.admin_call(lambda admin: admin.create_user(attributes))
        except AuthError as exc:
            cause = exc.__cause__
            refused = isinstance(cause, AuthApiError | AuthWeakPasswordError) and (
                cause.status < 500
            )
            if refused or (isinstance(exc, DatabaseUnavailable) and not exc.sent):
                self._identity_written = False
            raise

    def insert_profile(self, profile: NewProfile) -> Profile | None:
        self._profile_attempted = True
        return self.store.insert_profile(profile)

    def complete(self) -> None:
        try:
            self.store.set_signup_state(self.user_id, COMPLETE)
        except StorageError as exc:
            if exc.reason != "auth_user_not_found":
                raise
            # Only an identity that is still there may answer 201.
            raise StorageError(
                "identity_missing",
                "the pending identity was gone when the signup completed it (removed by "
                "`authsvc reconcile --repair` or by hand)",
            ) from exc
        self._finished = True

    def compensate(self) -> bool:
        """Delete the profile (if an insert was tried) and the identity (if one may exist);
        True when nothing of this signup remains."""
        self._finished = True
        ok = True
        if self._profile_attempted:
            try:
                self.store.delete_profile(self.user_id)
            except AuthError as exc:
                ok = False
                log.error(
                    "compensation could not delete the profile",
                    extra={"user_id": str(self.user_id), "error": repr(exc)},
                )
        if self._identity_written:
            try:
                self.store.delete_identity(self.user_id)
            except AuthError as exc:
                ok = False
                log.error(
                    "compensation could not delete the identity; it stays pending and "
                    "`authsvc reconcile --repair` removes it",
                    extra={"user_id": str(self.user_id), "error": repr(exc)},
                )
        return ok


# -- the store ------------------------------------------------------------------------------------


class SupabaseStore(PgSessions):
    backend = "supabase"

    def __init__(self, settings: Settings, hasher: Hasher) -> None:
        if not settings.database_url:
            raise ValueError("SupabaseStore needs a database URL for sessions")
        if not (
            settings.supabase_url
            and settings.supabase_service_role_key
            and settings.supabase_anon_key
        ):
            raise ValueError("SupabaseStore needs SUPABASE_URL and both Supabase keys")
        self.hasher = hasher
        self.url = settings.supabase_url
        self._service_key = settings.supabase_service_role_key
        self._anon_key = settings.supabase_anon_key
        self.email_confirm = settings.supabase_email_confirm
        self._connect_timeout = float(settings.connect_timeout)
        self.sessions_db = Database(
            settings.database_url,
            "database",
            connect_timeout=settings.connect_timeout,
            pool_timeout=settings.pool_timeout,
            max_size=settings.pool_max_size,
            statement_timeout_ms=settings.statement_timeout_ms,
            pooler=settings.db_pooler,
        )
        self._lock = threading.Lock()
        self._http: httpx.Client | None = None
        self._service: Client | None = None
        for problem in key_problems(self.url, self._service_key, self._anon_key):
            log.warning("Supabase keys: %s (run `authsvc doctor`)", problem)

    def __repr__(self) -> str:
        return f"SupabaseStore(url={self.url!r}, sessions={self.sessions_db.name!r})"

    # -- clients ----------------------------------------------------------------------------------

    def _http_client(self) -> httpx.Client:
        """One HTTP connection pool for every Supabase request; it keeps no cookies, so
        nothing of one sign-in can ride along on another request."""
        with self._lock:
            if self._http is None:
                self._http = httpx.Client(
                    timeout=httpx.Timeout(REQUEST_TIMEOUT, connect=self._connect_timeout),
                    cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
                )
            return self._http

    def _options(self) -> ClientOptions:
        # No session is ever stored or refreshed; PostgREST errors are answered at once
        # instead of retried with sleeps inside a request.
        return ClientOptions(
            auto_refresh_token=False,
            persist_session=False,
            postgrest_client_retry=False,
            httpx_client=self._http_client(),
        )

    def service(self) -> Client:
        """The server-side client (service role key). It never signs anyone in, so its
        requests always carry the service role key."""
        options = self._options()
        with self._lock:
            if self._service is None:
                self._service = create_client(self.url, self._service_key or "", options)
            return self._service

    def _anon_client(self) -> Client:
        """A fresh anon-key client for one sign-in: a sign-in switches its client to the
        user's token, so a shared client would carry one user's session into the next call."""
        return create_client(self.url, self._anon_key or "", self._options())

    def admin_call(self, call: Callable[[Any], T]) -> T:
        """Run `call(auth.admin)`; Supabase Auth's errors leave as AuthErrors."""
        try:
            return call(self.service().auth.admin)
        except GoTrueError as exc:
            raise auth_error(exc) from exc
        except ValueError as exc:  # a response pydantic could not read
            raise StorageError(
                "auth_unexpected_response", "Supabase Auth answered something unexpected"
            ) from exc

    def rest_call(self, build: Callable[[Any], Any]) -> Any:
        """Execute `build(table("users"))`; PostgREST's errors leave as AuthErrors."""
        try:
            return build(self.service().table(PROFILE_TABLE)).execute()
        except APIError as exc:
            raise rest_error(exc) from exc
        except httpx.TransportError as exc:
            raise DatabaseUnavailable(database=REST_SERVICE, sent=was_sent(exc)) from exc

    # -- lifecycle --------------------------------------------------------------------------------

    def open(self) -> None:
        self.sessions_db.open()

    def close(self) -> None:
        self.sessions_db.close()
        with self._lock:
            http, self._http, self._service = self._http, None, None
        if http is not None:
            http.close()

    def check(self) -> dict[str, str]:
        """The sessions database; Supabase's reachability is `authsvc doctor`'s business, so a
        blip at Supabase does not take every instance out of rotation."""
        return {self.sessions_db.name: self.sessions_db.ping()}

    def migrate(self) -> list[str]:
        """Only authsvc's own tables (sessions, refresh tokens, idempotency keys); the profile
        table is created by the SQL in supabase/migrations."""
        return apply_migrations(self.sessions_db, MIGRATION_SETS)

    def migration_status(self) -> dict[str, Any]:
        status = migration_status(self.sessions_db, MIGRATION_SETS)
        return {
            "databases": {self.sessions_db.name: status},
            "pending": status["pending"],
            "schema_version": status["latest"],
        }

    # -- signup -----------------------------------------------------------------------------------

    def signup(self, user_id: UUID) -> _SignupUnit:
        return _SignupUnit(self, user_id)

    # -- identities -------------------------------------------------------------------------------

    def _get_user(self, user_id: UUID) -> User | None:
        try:
            return self.admin_call(lambda admin: admin.get_user_by_id(str(user_id))).user
        except StorageError as exc:
            if exc.reason in ("auth_user_not_found", "auth_http_404"):
                return None
            raise

    def get_identity(self, user_id: UUID) -> Identity | None:
        user = self._get_user(user_id)
        return to_identity(user) if user is not None else None

    def find_identity_by_email(self, email: str) -> Identity | None:
        """Through the profile first (one indexed read, maybe-single), then by paging the
        users, which also finds identities that have no profile."""
        pattern = _escape_like(email)
        if pattern is not None:
            try:
                found = self.rest_call(
                    lambda t: t.select("id").ilike("email", pattern).maybe_single()
                )
            except StorageError:
                found = None  # several profiles carry this email: look at the identities
            if found is not None:
                identity = self.get_identity(UUID(found.data["id"]))
                if identity is not None and identity.email.lower() == email.lower():
                    return identity
        for user in self._iter_users():
            if (user.email or "").lower() == email.lower():
                return to_identity(user)
        return None

    def authenticate(self, email: str, password: str) -> Identity | None:
        """Supabase Auth checks the password, on a fresh anon-key client; the Supabase session
        it opens is revoked at once, since authsvc issues its own."""
        client = self._anon_client()
        try:
            response = client.auth.sign_in_with_password({"email": email, "password": password})
        except GoTrueError as exc:
            err = auth_error(exc)
            if isinstance(err, RateLimited | DatabaseUnavailable):
                raise err from exc
            if isinstance(err, StorageError) and err.reason in (
                "auth_server_error",
                "auth_key_rejected",
            ):
                raise err from exc
            if exc.code == "email_not_confirmed":
                log.info("sign-in refused: the email is not confirmed in Supabase Auth")
            # invalid_credentials, and user_banned, which Supabase Auth answers before it looks
            # at the password: telling it apart would reveal a ban to anyone with the email.
            return None
        if response.user is None:
            return None
        try:
            client.auth.sign_out({"scope": "local"})
        except (GoTrueError, httpx.HTTPError) as exc:
            log.info(
                "could not revoke the Supabase session of a sign-in", extra={"error": repr(exc)}
            )
        return to_identity(response.user)

    def set_signup_state(self, user_id: UUID, state: str) -> None:
        self.admin_call(
            lambda admin: admin.update_user_by_id(
                str(user_id), {"app_metadata": {SIGNUP_MARK: state}}
            )
        )

    def record_sign_in(self, user_id: UUID) -> None:
        """Supabase Auth records last_sign_in_at itself on every password sign-in."""

    def delete_identity(self, user_id: UUID) -> bool:
        """Delete the user (its profile goes with it through the foreign key); False when there
        was none."""
        try:
            self.admin_call(lambda admin: admin.delete_user(str(user_id)))
        except StorageError as exc:
            if exc.reason in ("auth_user_not_found", "auth_http_404"):
                return False
            raise
        return True

    def _iter_users(self) -> Iterator[User]:
        """Every Supabase Auth user, page by page, until an empty page. The admin API pages
        by offset (newest first): a user deleted meanwhile can shift another past us, which
        the next reconcile run picks up."""
        seen: set[str] = set()
        previous: list[str] = []
        page = 1
        while True:
            users = self.admin_call(
                lambda admin, page=page: admin.list_users(page=page, per_page=USERS_PER_PAGE)
            )
            ids = [u.id for u in users]
            if not ids or ids == previous:  # the end, or a server that ignores `page`
                return
            yield from (u for u in users if u.id not in seen)
            seen.update(ids)
            previous = ids
            page += 1

    # -- profiles ---------------------------------------------------------------------------------

    def get_profile(self, user_id: UUID) -> Profile | None:
        found = self.rest_call(
            lambda t: t.select(PROFILE_COLUMNS).eq("id", str(user_id)).maybe_single()
        )
        return to_profile(found.data) if found is not None else None

    def insert_profile(self, profile: NewProfile) -> Profile | None:
        """INSERT with the explicit UUID, asking for the row back; None when no row came back
        (a BEFORE INSERT trigger returning NULL drops it and PostgREST answers `[]`)."""
        row = {
            "id": str(profile.id),
            "email": profile.email,
            "username": profile.username,
            "display_name": profile.display_name,
        }
        response = self.rest_call(lambda t: t.insert(row, returning=ReturnMethod.representation))
        return to_profile(response.data[0]) if response.data else None

    def update_profile(self, user_id: UUID, changes: dict[str, Any]) -> Profile | None:
        columns = {c: changes[c] for c in PROFILE_FIELDS if c in changes}
        if not columns:
            return self.get_profile(user_id)
        columns["updated_at"] = datetime.now(UTC).isoformat()
        response = self.rest_call(lambda t: t.update(columns).eq("id", str(user_id)))
        return to_profile(response.data[0]) if response.data else None

    def delete_profile(self, user_id: UUID) -> int:
        response = self.rest_call(lambda t: t.delete().eq("id", str(user_id)))
        return len(response.data or [])

    def _iter_profiles(self) -> Iterator[dict[str, Any]]:
        """Every profile's id and created_at, in id order by keyset, until an empty page (a
        short page proves nothing when the project lowers PostgREST's max-rows)."""
        last: str | None = None
        while True:
            rows = self.rest_call(lambda t, after=last: _profile_page(t, after)).data or []
            if not rows:
                return
            yield from rows
            last = rows[-1]["id"]

    # -- reconcile --------------------------------------------------------------------------------

    def find_drift(self, grace_seconds: int, id_limit: int = 1000) -> Drift:
        """The same drift as PostgresStore's, from a walk over both sides."""
        cutoff = datetime.now(UTC) - timedelta(seconds=grace_seconds)
        identities = {UUID(u.id): (u.created_at, signup_state(u)) for u in self._iter_users()}
        profiles = {
            UUID(str(r["id"])): timestamp(r.get("created_at")) for r in self._iter_profiles()
        }
        drift = Drift()

        def add(kind: str, user_id: UUID) -> None:
            setattr(drift, f"{kind}_count", getattr(drift, f"{kind}_count") + 1)
            ids = getattr(drift, kind)
            if len(ids) < id_limit:
                ids.append(user_id)

        for user_id in sorted(identities):
            created, state = identities[user_id]
            if created >= cutoff:
                continue
            if user_id not in profiles:
                add("identities_without_profile", user_id)
            elif state == PENDING:
                add("unfinished_with_profile", user_id)
        for user_id in sorted(profiles):
            created = profiles[user_id]
            if created is not None and created < cutoff and user_id not in identities:
                add("profiles_without_identity", user_id)
        return drift

    def repair_drift(self, grace_seconds: int) -> dict[str, int]:
        """Give back what was acknowledged, remove what was not; each user is re-read right
        before it is touched, and every action is logged.

        A complete identity was answered 201: it gets its missing profile back. A pending one
        never was (the 201 comes only after `complete()`), so it is removed together with any
        profile it has, as PostgresStore does.
        """
        drift = self.find_drift(grace_seconds, id_limit=10**12)
        cutoff = datetime.now(UTC) - timedelta(seconds=grace_seconds)
        repaired = {"profiles_created": 0, "identities_removed": 0, "profiles_removed": 0}
        for user_id in drift.unfinished_with_profile + drift.identities_without_profile:
            user = self._get_user(user_id)
            if user is None:
                continue
            if signup_state(user) == PENDING:
                if user.created_at >= cutoff:  # young enough to belong to a signup in flight
                    continue
                # The foreign key's ON DELETE CASCADE takes the profile with the user; delete
                # it first anyway, for a project whose table lacks that key.
                self.delete_profile(user_id)
                if self.delete_identity(user_id):
                    repaired["identities_removed"] += 1
                    log.warning(
                        "reconcile removed an identity whose signup never finished",
                        extra={"user_id": str(user_id)},
                    )
            elif self.get_profile(user_id) is None and self._recreate_profile(user):
                repaired["profiles_created"] += 1
                log.warning(
                    "reconcile recreated a missing profile", extra={"user_id": str(user_id)}
                )
        for user_id in drift.profiles_without_identity:
            if self._get_user(user_id) is not None:
                continue
            removed = self.delete_profile(user_id)
            if removed:
                repaired["profiles_removed"] += removed
                log.warning(
                    "reconcile removed a profile without an identity",
                    extra={"user_id": str(user_id)},
                )
        return repaired

    def _recreate_profile(self, user: User) -> bool:
        """A complete identity was answered 201 once: give it its profile back."""
        return recreate_profile(self, UUID(user.id), user.email or "", user.user_metadata)

    # -- diagnosis --------------------------------------------------------------------------------

    def diagnose(self) -> list[tuple[str, bool, str]]:
        """Keys in the right places, Supabase Auth and the profile table reachable with the
        service role key, and no trigger on auth.users that writes profiles itself."""
        problems = key_problems(self.url, self._service_key, self._anon_key)
        checks = [
            (
                "supabase_keys",
                not problems,
                "the service role and anon keys are in their places"
                if not problems
                else "; ".join(problems),
            )
        ]
        try:
            self.admin_call(lambda admin: admin.list_users(page=1, per_page=1))
            checks.append(("supabase_auth", True, f"the admin API at {self.url} answers"))
        except AuthError as exc:
            checks.append(("supabase_auth", False, _remedy(exc, "Supabase Auth admin API")))
        try:
            self.rest_call(lambda t: t.select("id").limit(1))
            checks.append(("profiles_table", True, "public.users answers through PostgREST"))
        except AuthError as exc:
            checks.append(("profiles_table", False, _remedy(exc, "public.users")))
        checks.append(self._trigger_check())
        return checks

    def _trigger_check(self) -> tuple[str, bool, str]:
        try:
            where = self.sessions_db.fetchone(
                "SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = "
                "'auth' AND table_name = 'users' AND column_name = 'raw_app_meta_data') AS ok"
            )
            if not where or not where["ok"]:
                return (
                    "triggers",
                    True,
                    "DATABASE_URL is not the Supabase database, so triggers on auth.users were "
                    "not checked; look under Database -> Triggers in the dashboard for one that "
                    "inserts into public.users",
                )
            rows = self.sessions_db.fetchall(
                "SELECT t.tgname, n.nspname || '.' || p.proname AS function, p.prosrc "
                "FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid "
                "JOIN pg_namespace n ON n.oid = p.pronamespace "
                "WHERE t.tgrelid = 'auth.users'::regclass AND NOT t.tgisinternal "
                "ORDER BY t.tgname"
            )
        except AuthError as exc:
            return ("triggers", False, f"could not read the triggers on auth.users: {exc.message}")
        colliding = [r for r in rows if _INSERTS_PROFILE.search(r["prosrc"] or "")]
        if colliding:
            names = ", ".join(f"{r['tgname']} ({r['function']})" for r in colliding)
            return (
                "triggers",
                False,
                f"triggers on auth.users insert into public.users themselves: {names}; every "
                "signup's profile insert would collide with them (unique_violation) -> drop "
                "them (DROP TRIGGER <name> ON auth.users); authsvc writes the profile",
            )
        others = ", ".join(r["tgname"] for r in rows)
        return (
            "triggers",
            True,
            "no trigger on auth.users writes public.users"
            + (f" (other triggers: {others})" if others else ""),
        )


def _profile_page(table: Any, after: str | None) -> Any:
    query = table.select("id,created_at")
    if after is not None:
        query = query.gt("id", after)
    return query.order("id").limit(PROFILES_PER_PAGE)


def _remedy(exc: AuthError, what: str) -> str:
    if isinstance(exc, DatabaseUnavailable):
        return f"{what} cannot be reached -> check SUPABASE_URL and the network"
    reason = exc.reason if isinstance(exc, StorageError) else exc.code
    hint = exc.hint if isinstance(exc, StorageError) else None
    return f"{what}: {reason}" + (f" -> {hint}" if hint else "")


__all__ = ["SupabaseStore", "key_problems", "key_role"]
