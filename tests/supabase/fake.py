"""A Supabase project at the HTTP boundary: respx routes for the requests supabase-py sends.

Supabase Auth (GoTrue) and PostgREST cannot run on these machines, so this module answers the
exact requests supabase-py 2.34 sends with the responses the servers give. Where each shape
comes from:

- Requests: supabase_auth/_sync/gotrue_admin_api.py (create_user: POST admin/users with the
  attributes as body; get_user_by_id / update_user_by_id: GET / PUT admin/users/{id};
  delete_user: DELETE admin/users/{id} with body {"should_soft_delete": false}; list_users:
  GET admin/users?page=&per_page=), supabase_auth/_sync/gotrue_client.py (sign_in_with_password:
  POST token?grant_type=password with {"email", "password", "data", "gotrue_meta_security"};
  sign_out: POST logout?scope= with the user's token), supabase_auth/_sync/gotrue_base_api.py
  (every request carries X-Supabase-Api-Version: 2024-01-01), postgrest/base_request_builder.py
  (pre_insert: Prefer return=representation; filters as `column=op.value` query parameters).
- Auth responses: supabase/auth internal/api/admin.go (adminUserCreate answers the user
  object; a taken email is 422 email_exists "A user with this email address has already been
  registered"; adminUserDelete answers {}; loadUser answers 404 user_not_found "User not
  found"; adminUsers answers {"users": [...], "aud": ...} with X-Total-Count and Link headers,
  newest first), internal/api/token.go (AccessTokenResponse; a wrong password or unknown email
  is 400 invalid_credentials "Invalid login credentials"), internal/api/errors.go
  (HandleResponseError: for API version 2024-01-01 the body is {"code", "message"}, the header
  X-Supabase-Api-Version is echoed and x-sb-error-code set; without that header
  supabase_auth.helpers.handle_exception reads no `code`), internal/models/user.go
  (NewUserWithPasswordHash lower-cases the email and keeps the argon2 hash).
- PostgREST responses: docs.postgrest.org "Errors" (body {"code", "details", "hint",
  "message"}; 23503 and 23505 are 409, 42501 is 403 for an authenticated role; PGRST116 is
  406), and Postgres's own messages for the constraints in supabase/migrations.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import httpx
import respx
from argon2 import PasswordHasher
from argon2.exceptions import VerificationError

PROJECT_REF = "qwertyuiopasdfghjklz"
SUPABASE_URL = f"https://{PROJECT_REF}.supabase.co"
API_VERSION = {"X-Supabase-Api-Version": "2024-01-01"}
MARK = "authsvc_signup"


def fake_jwt(payload: dict[str, Any]) -> str:
    """A JWT-shaped string (unsigned for our purposes: nothing here verifies signatures)."""

    def part(value: dict[str, Any]) -> str:
        raw = json.dumps(value, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(payload)}.c2lnbmF0dXJlLW5vdC1jaGVja2Vk"


def project_key(role: str, ref: str = PROJECT_REF) -> str:
    """A legacy API key as Supabase issues them: a JWT with role and project ref."""
    return fake_jwt(
        {"iss": "supabase", "ref": ref, "role": role, "iat": 1700000000, "exp": 2000000000}
    )


SERVICE_KEY = project_key("service_role")
ANON_KEY = project_key("anon")


def claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


# -- response builders ---------------------------------------------------------------------------


def auth_json(status: int, body: Any) -> httpx.Response:
    return httpx.Response(status, json=body, headers=API_VERSION)


def auth_error(status: int, code: str, message: str, **extra: Any) -> httpx.Response:
    """Supabase Auth's error body for API version 2024-01-01 (internal/api/errors.go)."""
    return httpx.Response(
        status,
        json={"code": code, "message": message, **extra},
        headers={**API_VERSION, "x-sb-error-code": code},
    )


def weak_password(reasons: list[str]) -> httpx.Response:
    """HandleResponseError's WeakPasswordError branch for API version 2024-01-01."""
    return auth_error(
        422,
        "weak_password",
        "Password should be at least 6 characters.",
        weak_password={"reasons": reasons},
    )


def rest_json(status: int, body: Any) -> httpx.Response:
    return httpx.Response(
        status, json=body, headers={"Content-Type": "application/json; charset=utf-8"}
    )


def rest_error(
    status: int, code: str, message: str, details: str | None = None, hint: str | None = None
) -> httpx.Response:
    """PostgREST's error body (docs.postgrest.org, "Errors")."""
    return rest_json(status, {"code": code, "details": details, "hint": hint, "message": message})


def fk_violation(user_id: str) -> httpx.Response:
    return rest_error(
        409,
        "23503",
        'insert or update on table "users" violates foreign key constraint "users_id_fkey"',
        f'Key (id)=({user_id}) is not present in table "users".',
    )


def pkey_violation(user_id: str) -> httpx.Response:
    return rest_error(
        409,
        "23505",
        'duplicate key value violates unique constraint "users_pkey"',
        f"Key (id)=({user_id}) already exists.",
    )


def username_violation(username: str) -> httpx.Response:
    return rest_error(
        409,
        "23505",
        'duplicate key value violates unique constraint "users_username_key"',
        f"Key (username)=({username}) already exists.",
    )


def rls_violation() -> httpx.Response:
    return rest_error(403, "42501", 'new row violates row-level security policy for table "users"')


def permission_denied() -> httpx.Response:
    return rest_error(403, "42501", "permission denied for table users")


# -- the fake project ------------------------------------------------------------------------------


class FakeSupabase:
    """Users, profiles and sign-in sessions of one project, served through respx routes.

    `fail(route, response_or_exception)` makes the next request to `route` get that answer
    instead (several calls queue up); `requests(route)` lists what supabase-py sent.
    """

    def __init__(self) -> None:
        self.users: dict[str, dict[str, Any]] = {}
        self.password_hashes: dict[str, str] = {}
        self.profiles: dict[str, dict[str, Any]] = {}
        self.sessions: dict[str, str] = {}  # access token -> user id
        self.revoked: list[str] = []
        self._faults: dict[str, list[Any]] = defaultdict(list)
        self.sequence: list[str] = []  # route names, in the order requests arrived
        self.anonymous_sign_ins = True  # External.AnonymousUsers.Enabled
        self.otp_seconds = 3600  # Mailer.OtpExp
        self.router = respx.MockRouter(
            base_url=SUPABASE_URL, assert_all_called=False, assert_all_mocked=True
        )
        user_path = r"^/auth/v1/admin/users/(?P<uid>[^/]+)$"
        routes = [
            (self.router.post("/auth/v1/admin/users", name="create_user"), self._create_user),
            (self.router.get("/auth/v1/admin/users", name="list_users"), self._list_users),
            (self.router.get(path__regex=user_path, name="get_user"), self._get_user),
            (self.router.put(path__regex=user_path, name="update_user"), self._update_user),
            (self.router.delete(path__regex=user_path, name="delete_user"), self._delete_user),
            (self.router.post("/auth/v1/token", name="token"), self._token),
            (self.router.post("/auth/v1/signup", name="signup"), self._signup),
            (self.router.post("/auth/v1/verify", name="verify"), self._verify),
            (
                self.router.post("/auth/v1/admin/generate_link", name="generate_link"),
                self._generate_link,
            ),
            (self.router.post("/auth/v1/logout", name="logout"), self._logout),
            (self.router.post("/rest/v1/users", name="insert_profile"), self._insert),
            (self.router.get("/rest/v1/users", name="select_profiles"), self._select),
            (self.router.patch("/rest/v1/users", name="update_profile"), self._update),
            (self.router.delete("/rest/v1/users", name="delete_profile"), self._delete),
        ]
        for route, handler in routes:
            route.mock(side_effect=self._wrap(route.name, handler))

    def __enter__(self) -> FakeSupabase:
        self.router.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.router.__exit__(*exc_info)

    # -- test controls ----------------------------------------------------------------------------

    def fail(self, route: str, answer: Any, times: int = 1) -> None:
        """The next `times` requests to `route` get `answer`: a response, an exception to
        raise, or a function of the request returning a response."""
        self._faults[route].extend([answer] * times)

    def requests(self, route: str) -> list[httpx.Request]:
        return [call.request for call in self.router.routes[route].calls]

    def bodies(self, route: str) -> list[Any]:
        return [json.loads(r.content) if r.content else None for r in self.requests(route)]

    def all_requests(self) -> list[httpx.Request]:
        return [call.request for call in self.router.calls]

    def add_user(
        self,
        email: str,
        *,
        state: str | None = "complete",
        age: float = 0,
        password_hash: str | None = None,
        metadata: dict[str, Any] | None = None,
        signup_profile: dict[str, Any] | None = None,
        user_id: str | None = None,
    ) -> str:
        """A user as if created earlier (by authsvc with `state`, or by anything else with
        state None); returns its id."""
        uid = user_id or str(uuid4())
        created = _now() - timedelta(seconds=age)
        app_metadata: dict[str, Any] = {"provider": "email", "providers": ["email"]}
        if state is not None:
            app_metadata[MARK] = state
        if signup_profile is not None:  # what authsvc's signup asked for (service role only)
            app_metadata["authsvc_profile"] = dict(signup_profile)
        self.users[uid] = {
            "id": uid,
            "aud": "authenticated",
            "role": "authenticated",
            "email": email.lower(),
            "email_confirmed_at": _iso(created),
            "phone": "",
            "confirmed_at": _iso(created),
            "app_metadata": app_metadata,
            "user_metadata": dict(metadata or {}),
            "identities": [],
            "created_at": _iso(created),
            "updated_at": _iso(created),
            "is_anonymous": False,
        }
        if password_hash:
            self.password_hashes[uid] = password_hash
        return uid

    def add_profile(
        self, user_id: str, email: str, username: str | None = None, age: float = 0
    ) -> None:
        created = (_now() - timedelta(seconds=age)).isoformat()
        self.profiles[user_id] = {
            "id": user_id,
            "email": email,
            "username": username,
            "display_name": None,
            "created_at": created,
            "updated_at": created,
        }

    def age(self, user_id: str, seconds: float) -> None:
        """Move a user's (and its profile's) creation `seconds` into the past."""
        if user_id in self.users:
            created = datetime.fromisoformat(self.users[user_id]["created_at"])
            self.users[user_id]["created_at"] = _iso(created - timedelta(seconds=seconds))
        if user_id in self.profiles:
            created = datetime.fromisoformat(self.profiles[user_id]["created_at"])
            self.profiles[user_id]["created_at"] = (
                created - timedelta(seconds=seconds)
            ).isoformat()

    def state(self, user_id: str) -> str | None:
        return self.users[user_id]["app_metadata"].get(MARK)

    # -- plumbing ---------------------------------------------------------------------------------

    def _wrap(self, name: str, handler: Any) -> Any:
        def side_effect(request: httpx.Request, **_: Any) -> httpx.Response:
            self.sequence.append(name)
            if self._faults[name]:
                answer = self._faults[name].pop(0)
                if isinstance(answer, Exception):
                    raise answer
                return answer(request) if callable(answer) else answer
            return handler(request)

        return side_effect

    @staticmethod
    def _bearer(request: httpx.Request) -> str:
        return request.headers.get("Authorization", "").removeprefix("Bearer ")

    def _is_admin(self, request: httpx.Request) -> bool:
        return self._bearer(request) == SERVICE_KEY and request.headers.get("apikey") == SERVICE_KEY

    # -- Supabase Auth ----------------------------------------------------------------------------

    def _not_admin(self) -> httpx.Response:
        return auth_error(403, "not_admin", "User not allowed")

    def _user_id(self, request: httpx.Request) -> str:
        return request.url.path.rsplit("/", 1)[1]

    def _create_user(self, request: httpx.Request) -> httpx.Response:
        if not self._is_admin(request):
            return self._not_admin()
        body = json.loads(request.content)
        email = body.get("email", "")
        if any(u["email"] == email.lower() for u in self.users.values()):
            return auth_error(
                422, "email_exists", "A user with this email address has already been registered"
            )
        if body.get("password") is not None and body.get("password_hash"):
            return auth_error(
                400, "validation_failed", "Only a password or a password hash should be provided"
            )
        uid = body.get("id") or str(uuid4())
        if uid in self.users:
            return auth_error(500, "unexpected_failure", "Database error creating new user")
        self.add_user(
            email,
            state=None,
            password_hash=body.get("password_hash"),
            metadata=body.get("user_metadata"),
            user_id=uid,
        )
        user = self.users[uid]
        user["app_metadata"].update(body.get("app_metadata") or {})
        if not body.get("email_confirm"):
            user.pop("email_confirmed_at")
            user.pop("confirmed_at")
        return auth_json(200, user)

    def _list_users(self, request: httpx.Request) -> httpx.Response:
        if not self._is_admin(request):
            return self._not_admin()
        page = int(request.url.params.get("page") or 1)
        per_page = int(request.url.params.get("per_page") or 50)
        ordered = sorted(self.users.values(), key=lambda u: u["created_at"], reverse=True)
        chunk = ordered[(page - 1) * per_page : page * per_page]
        headers = {**API_VERSION, "X-Total-Count": str(len(ordered))}
        return httpx.Response(200, json={"users": chunk, "aud": "authenticated"}, headers=headers)

    def _get_user(self, request: httpx.Request) -> httpx.Response:
        if not self._is_admin(request):
            return self._not_admin()
        user = self.users.get(self._user_id(request))
        if user is None:
            return auth_error(404, "user_not_found", "User not found")
        return auth_json(200, user)

    def _update_user(self, request: httpx.Request) -> httpx.Response:
        if not self._is_admin(request):
            return self._not_admin()
        user = self.users.get(self._user_id(request))
        if user is None:
            return auth_error(404, "user_not_found", "User not found")
        body = json.loads(request.content)
        password = body.get("password")
        if password is not None and len(password) < 6:  # checkPasswordStrength, default policy
            return weak_password(["length"])
        email = (body.get("email") or "").lower()
        if email and any(u["email"] == email and u is not user for u in self.users.values()):
            # adminUserUpdate checks no duplicate: the unique index refuses the update.
            return auth_error(500, "unexpected_failure", "Error updating user")
        if body.get("email_confirm"):
            user["email_confirmed_at"] = user["confirmed_at"] = _iso(_now())
        if password is not None:
            self.password_hashes[user["id"]] = PasswordHasher().hash(password)
        if email:
            if user["is_anonymous"] and body.get("email_confirm"):
                user["is_anonymous"] = False
            user["email"] = email
        if "ban_duration" in body and (refused := ban_duration(user, body["ban_duration"])):
            return refused
        for key in ("app_metadata", "user_metadata"):
            for k, v in (body.get(key) or {}).items():  # UpdateAppMetaData: null deletes
                if v is None:
                    user[key].pop(k, None)
                else:
                    user[key][k] = v
        user["updated_at"] = _iso(_now())
        return auth_json(200, user)

    def _delete_user(self, request: httpx.Request) -> httpx.Response:
        if not self._is_admin(request):
            return self._not_admin()
        uid = self._user_id(request)
        if uid not in self.users:
            return auth_error(404, "user_not_found", "User not found")
        del self.users[uid]
        self.password_hashes.pop(uid, None)
        self.profiles.pop(uid, None)  # public.users.id references auth.users on delete cascade
        return auth_json(200, {})

    def _token(self, request: httpx.Request) -> httpx.Response:
        if request.url.params.get("grant_type") != "password":
            return auth_error(400, "validation_failed", "unsupported grant type")
        body = json.loads(request.content)
        email = (body.get("email") or "").lower()
        user = next((u for u in self.users.values() if u["email"] == email), None)
        invalid = auth_error(400, "invalid_credentials", "Invalid login credentials")
        if user is None or user["id"] not in self.password_hashes:
            return invalid
        # GoTrue's ResourceOwnerPasswordGrant (internal/api/token.go) checks the ban before it
        # looks at the password, and the confirmation only after the password matched.
        if user.get("banned_until") and datetime.fromisoformat(user["banned_until"]) > _now():
            return auth_error(400, "user_banned", "User is banned")
        try:
            PasswordHasher().verify(self.password_hashes[user["id"]], body.get("password", ""))
        except VerificationError:
            return invalid
        if "email_confirmed_at" not in user:
            return auth_error(400, "email_not_confirmed", "Email not confirmed")
        expires_at = int(_now().timestamp()) + 3600
        access = fake_jwt(
            {
                "sub": user["id"],
                "role": "authenticated",
                "aud": "authenticated",
                "session_id": str(uuid4()),
                "exp": expires_at,
            }
        )
        self.sessions[access] = user["id"]
        user["last_sign_in_at"] = _iso(_now())
        return auth_json(
            200,
            {
                "access_token": access,
                "token_type": "bearer",
                "expires_in": 3600,
                "expires_at": expires_at,
                "refresh_token": secrets.token_urlsafe(12),
                "user": user,
            },
        )

    def _session(self, user: dict[str, Any]) -> dict[str, Any]:
        """AccessTokenResponse (tokens.AccessTokenResponse) for `user`, now signed in."""
        expires_at = int(_now().timestamp()) + 3600
        access = fake_jwt(
            {
                "sub": user["id"],
                "role": "authenticated",
                "aud": "authenticated",
                "session_id": str(uuid4()),
                "is_anonymous": user["is_anonymous"],
                "exp": expires_at,
            }
        )
        self.sessions[access] = user["id"]
        user["last_sign_in_at"] = _iso(_now())
        return {
            "access_token": access,
            "token_type": "bearer",
            "expires_in": 3600,
            "expires_at": expires_at,
            "refresh_token": secrets.token_urlsafe(12),
            "user": user,
        }

    def _signup(self, request: httpx.Request) -> httpx.Response:
        """POST /signup without email or phone: SignupAnonymously (internal/api/anonymous.go,
        api.go), with the anon key."""
        body = json.loads(request.content)
        if body.get("email") or body.get("phone"):
            raise AssertionError("only anonymous sign-ups are modelled")
        if not self.anonymous_sign_ins:
            return auth_error(422, "anonymous_provider_disabled", "Anonymous sign-ins are disabled")
        uid = self.add_user("", state=None, metadata=body.get("data"))
        user = self.users[uid]
        user.update(is_anonymous=True, app_metadata={}, identities=[])
        for key in ("email_confirmed_at", "confirmed_at"):
            user.pop(key)
        return auth_json(200, self._session(user))

    def _generate_link(self, request: httpx.Request) -> httpx.Response:
        """adminGenerateLink (internal/api/mail.go) for type signup: an existing unconfirmed
        user gets a confirmation token; the answer is the user with the link's properties."""
        if not self._is_admin(request):
            return self._not_admin()
        body = json.loads(request.content)
        if body.get("type") != "signup":
            raise AssertionError(f"generate_link type {body.get('type')} not modelled")
        email = (body.get("email") or "").lower()
        user = next((u for u in self.users.values() if u["email"] == email), None)
        if user is None:
            return auth_error(400, "validation_failed", "Signup requires a valid password")
        if user.get("email_confirmed_at"):
            return auth_error(
                422, "email_exists", "A user with this email address has already been registered"
            )
        otp = f"{secrets.randbelow(10**6):06d}"
        hashed = hashlib.sha224((email + otp).encode()).hexdigest()  # crypto.GenerateTokenHash
        user["confirmation_token"] = hashed
        user["confirmation_sent_at"] = _iso(_now())
        shown = {k: v for k, v in user.items() if k != "confirmation_token"}
        return auth_json(
            200,
            {
                **shown,
                "action_link": f"{SUPABASE_URL}/auth/v1/verify?token={hashed}&type=signup"
                "&redirect_to=http://localhost:3000",
                "email_otp": otp,
                "hashed_token": hashed,
                "verification_type": "signup",
                "redirect_to": "http://localhost:3000",
            },
        )

    def _verify(self, request: httpx.Request) -> httpx.Response:
        """verifyPost with a token hash (internal/api/verify.go): signupVerify confirms the user
        and answers a session; an unknown or expired hash is 403 otp_expired."""
        body = json.loads(request.content)
        assert body.get("type") == "signup" and body.get("token_hash"), body
        user = next(
            (u for u in self.users.values() if u.get("confirmation_token") == body["token_hash"]),
            None,
        )
        expired = auth_error(403, "otp_expired", "Email link is invalid or has expired")
        if user is None:
            return expired
        sent = datetime.fromisoformat(user["confirmation_sent_at"])
        if _now() > sent + timedelta(seconds=self.otp_seconds):
            return expired
        del user["confirmation_token"]
        user["email_confirmed_at"] = user["confirmed_at"] = _iso(_now())
        return auth_json(200, self._session(user))

    def _logout(self, request: httpx.Request) -> httpx.Response:
        token = self._bearer(request)
        if self.sessions.pop(token, None) is not None:
            self.revoked.append(token)
        return httpx.Response(204, headers=API_VERSION)

    # -- PostgREST --------------------------------------------------------------------------------

    def _forbidden_unless_service(self, request: httpx.Request) -> httpx.Response | None:
        # Only the service role bypasses row-level security; any other token reaching the
        # table means a sign-in leaked into the server-side client.
        return None if self._is_admin(request) else permission_denied()

    def _matching(self, request: httpx.Request) -> list[dict[str, Any]]:
        rows = sorted(self.profiles.values(), key=lambda r: r["id"])
        for column, expression in request.url.params.multi_items():
            if column in ("select", "order", "limit", "columns"):
                continue
            op, _, value = expression.partition(".")
            if op == "eq":
                rows = [r for r in rows if str(r.get(column)) == value]
            elif op == "gt":
                rows = [r for r in rows if UUID(str(r[column])) > UUID(value)]
            elif op == "in":  # in.(a,b,c)
                wanted = set(value.removeprefix("(").removesuffix(")").split(","))
                rows = [r for r in rows if str(r.get(column)) in wanted]
            elif op == "ilike":
                pattern = re.compile(_like_to_regex(value), re.I | re.S)
                rows = [r for r in rows if pattern.fullmatch(str(r.get(column) or ""))]
            else:
                raise AssertionError(f"filter {column}={expression} not modelled")
        if request.url.params.get("limit"):
            rows = rows[: int(request.url.params["limit"])]
        return rows

    @staticmethod
    def _project(request: httpx.Request, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        select = request.url.params.get("select") or "*"
        if select == "*":
            return [dict(r) for r in rows]
        columns = [c.strip() for c in select.split(",")]
        return [{c: r.get(c) for c in columns} for r in rows]

    def _representation(self, request: httpx.Request, status: int, rows: list[dict]) -> Any:
        if "return=representation" in request.headers.get("Prefer", ""):
            return rest_json(status, rows)
        return httpx.Response(204)

    def _insert(self, request: httpx.Request) -> httpx.Response:
        if (refused := self._forbidden_unless_service(request)) is not None:
            return refused
        body = json.loads(request.content)
        row = body if isinstance(body, dict) else body[0]
        uid = row["id"]
        if uid not in self.users:
            return fk_violation(uid)
        if uid in self.profiles:
            return pkey_violation(uid)
        username = row.get("username")
        if username and any(p["username"] == username for p in self.profiles.values()):
            return username_violation(username)
        self.add_profile(uid, row["email"], username)
        self.profiles[uid]["display_name"] = row.get("display_name")
        return self._representation(request, 201, [dict(self.profiles[uid])])

    def _select(self, request: httpx.Request) -> httpx.Response:
        if (refused := self._forbidden_unless_service(request)) is not None:
            return refused
        return rest_json(200, self._project(request, self._matching(request)))

    def _update(self, request: httpx.Request) -> httpx.Response:
        if (refused := self._forbidden_unless_service(request)) is not None:
            return refused
        changes = json.loads(request.content)
        rows = self._matching(request)
        username = changes.get("username")
        if username and any(
            p["username"] == username and p not in rows for p in self.profiles.values()
        ):
            return username_violation(username)
        for row in rows:
            row.update(changes)
        return self._representation(request, 200, [dict(r) for r in rows])

    def _delete(self, request: httpx.Request) -> httpx.Response:
        if (refused := self._forbidden_unless_service(request)) is not None:
            return refused
        rows = self._matching(request)
        for row in rows:
            del self.profiles[row["id"]]
        return self._representation(request, 200, rows)


def _like_to_regex(pattern: str) -> str:
    """A SQL ILIKE pattern (backslash escapes; PostgREST also reads `*` as `%`) as a regex."""
    out, escaped = [], False
    for char in pattern:
        if escaped:
            out.append(re.escape(char))
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in "%*":
            out.append(".*")
        elif char == "_":
            out.append(".")
        else:
            out.append(re.escape(char))
    return "".join(out)


# -- account lifecycle (admin): bans ------------------------------------------------------------

_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def ban_duration(user: dict[str, Any], duration: str) -> httpx.Response | None:
    """adminUserUpdate's `ban_duration`: "none" lifts the ban, a Go duration ("3600s", "2h")
    bans from now (internal/api/admin.go, models.User.Ban); anything else is refused."""
    if duration == "none":
        user["banned_until"] = None
        return None
    match = _DURATION.match(duration or "")
    if not duration or match is None:
        return auth_error(400, "validation_failed", "invalid format for ban duration")
    hours, minutes, seconds = (int(g or 0) for g in match.groups())
    user["banned_until"] = _iso(_now() + timedelta(hours=hours, minutes=minutes, seconds=seconds))
    return None
