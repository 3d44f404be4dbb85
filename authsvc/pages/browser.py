"""The browser's session: one signed cookie, HttpOnly and SameSite=Lax (Secure in production).

It carries the per-session CSRF token and, once signed in, the session's access and refresh
tokens. The tokens live only in this cookie: no page ever renders them, and no script can read
them. The signature (a key derived from JWT_SECRET_KEY) stops anyone from planting a CSRF token
of their choosing in the cookie; cookies signed with a key in AUTHSVC_PREVIOUS_SECRET_KEYS are
still accepted, and sent back signed with the current key.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer

from authsvc.config import Settings

COOKIE_NAME = "authsvc_session"
# Browsers accept a __Host- cookie only when it is Secure, host-only and Path=/.
SECURE_COOKIE_NAME = "__Host-authsvc_session"
_SALT = "authsvc.pages.session"


def _token() -> str:
    return secrets.token_urlsafe(32)


@dataclass
class BrowserSession:
    """What the cookie holds; `changed` says the response must send it again."""

    csrf_token: str
    access_token: str | None = None
    refresh_token: str | None = None
    changed: bool = False

    @classmethod
    def new(cls) -> BrowserSession:
        return cls(csrf_token=_token(), changed=True)

    @property
    def signed_in(self) -> bool:
        return bool(self.access_token and self.refresh_token)

    def sign_in(self, access_token: str, refresh_token: str) -> None:
        """Hold a new session; the CSRF token changes with who is signed in."""
        self.csrf_token = _token()
        self.access_token, self.refresh_token = access_token, refresh_token
        self.changed = True

    def rotate(self, access_token: str, refresh_token: str) -> None:
        """The same session after a refresh: new tokens, same CSRF token (open forms stay valid)."""
        self.access_token, self.refresh_token = access_token, refresh_token
        self.changed = True

    def sign_out(self) -> None:
        self.csrf_token = _token()
        self.access_token = self.refresh_token = None
        self.changed = True

    def csrf_matches(self, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(
            presented.encode(),
            self.csrf_token.encode(),  # type: ignore[union-attr]
        )


class SessionCookie:
    """Reads and writes the BrowserSession to its cookie."""

    def __init__(self, settings: Settings) -> None:
        self._serializer = URLSafeTimedSerializer(settings.jwt_secret_key, salt=_SALT)
        # itsdangerous signs with the last key of a list and verifies with any of them.
        keys = [*reversed(settings.previous_secret_keys), settings.jwt_secret_key]
        self._any_key = URLSafeTimedSerializer(keys, salt=_SALT)
        self.secure = settings.production
        self.name = SECURE_COOKIE_NAME if self.secure else COOKIE_NAME
        self.max_age = settings.refresh_token_ttl

    def read(self, cookies: Any) -> BrowserSession:
        """The session the browser sent, or a new anonymous one (tampered, expired or absent)."""
        raw = cookies.get(self.name)
        if raw:
            data, former_key = self._load(raw)
            if isinstance(data, dict) and isinstance(data.get("csrf"), str):
                access, refresh = data.get("at"), data.get("rt")
                if isinstance(access, str) and isinstance(refresh, str):
                    session = BrowserSession(data["csrf"], access, refresh)
                else:
                    session = BrowserSession(data["csrf"])
                # Signed with a previous key: send it again under the current one, so it
                # outlives that key's removal from AUTHSVC_PREVIOUS_SECRET_KEYS.
                session.changed = former_key
                return session
        return BrowserSession.new()

    def _load(self, raw: str) -> tuple[Any, bool]:
        """(the cookie's data or None, whether a previous key signed it)."""
        try:
            return self._serializer.loads(raw, max_age=self.max_age), False
        except BadSignature:
            pass
        try:
            return self._any_key.loads(raw, max_age=self.max_age), True
        except BadSignature:
            return None, False

    def write(self, response: Any, session: BrowserSession) -> None:
        data: dict[str, str] = {"csrf": session.csrf_token}
        if session.signed_in:
            data["at"], data["rt"] = session.access_token, session.refresh_token  # type: ignore
        response.set_cookie(
            self.name,
            self._serializer.dumps(data),
            # Signed in: as long as the refresh token lives. Anonymous: until the browser closes.
            max_age=self.max_age if session.signed_in else None,
            path="/",
            secure=self.secure,
            httponly=True,
            samesite="Lax",
        )
