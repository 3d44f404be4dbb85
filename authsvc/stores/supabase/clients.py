"""supabase-py clients for the server side, and the calls through which every request goes.

One server-side client, built with the service role key, never persists or refreshes a session
and never signs anyone in; each password check runs on a fresh anon-key client instead, because
a sign-in switches its client's later requests to the user's token. The service role key is
handed to supabase-py only; it never appears in a log line, an error, a `repr` or a response.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any, TypeVar

import httpx
from postgrest.exceptions import APIError
from supabase import Client, ClientOptions, create_client
from supabase_auth.errors import AuthError as GoTrueError

from authsvc.config import Settings
from authsvc.errors import DatabaseUnavailable, Reason, StorageError
from authsvc.stores.supabase.errors import REST_SERVICE, auth_error, rest_error, was_sent
from authsvc.stores.supabase.keys import key_problems

log = logging.getLogger("authsvc.stores.supabase")

T = TypeVar("T")

PROFILE_TABLE = "users"
REQUEST_TIMEOUT = 10.0


class SupabaseClients:
    """The project's URL and keys, one HTTP connection pool, and the server-side client."""

    def __init__(self, settings: Settings) -> None:
        if not (
            settings.supabase_url
            and settings.supabase_service_role_key
            and settings.supabase_anon_key
        ):
            raise ValueError("the Supabase backend needs SUPABASE_URL and both Supabase keys")
        self.url = settings.supabase_url
        self._service_key = settings.supabase_service_role_key
        self._anon_key = settings.supabase_anon_key
        self._connect_timeout = float(settings.connect_timeout)
        self._lock = threading.Lock()
        self._http: httpx.Client | None = None
        self._service: Client | None = None
        for problem in self.key_problems():
            log.warning("Supabase keys: %s (run `authsvc doctor`)", problem)

    def __repr__(self) -> str:
        return f"SupabaseClients(url={self.url!r})"

    def key_problems(self) -> list[str]:
        return key_problems(self.url, self._service_key, self._anon_key)

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
        """The server-side client (service role key)."""
        options = self._options()
        with self._lock:
            if self._service is None:
                self._service = create_client(self.url, self._service_key or "", options)
            return self._service

    def anon(self) -> Client:
        """A fresh anon-key client for one sign-in."""
        return create_client(self.url, self._anon_key or "", self._options())

    def admin_call(self, call: Callable[[Any], T]) -> T:
        """Run `call(auth.admin)`; Supabase Auth's errors leave as AuthErrors."""
        try:
            return call(self.service().auth.admin)
        except GoTrueError as exc:
            raise auth_error(exc) from exc
        except ValueError as exc:  # a response pydantic could not read
            raise StorageError(
                Reason.UNEXPECTED_RESPONSE, "Supabase Auth answered something unexpected"
            ) from exc

    def rest_call(self, build: Callable[[Any], Any]) -> Any:
        """Execute `build(table("users"))`; PostgREST's errors leave as AuthErrors."""
        try:
            return build(self.service().table(PROFILE_TABLE)).execute()
        except APIError as exc:
            raise rest_error(exc) from exc
        except httpx.TransportError as exc:
            sent = was_sent(exc)
            raise DatabaseUnavailable(database=REST_SERVICE, sent=sent, lost=sent) from exc

    def close(self) -> None:
        with self._lock:
            http, self._http, self._service = self._http, None, None
        if http is not None:
            http.close()
