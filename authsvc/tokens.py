"""Access tokens with flask-jwt-extended: minting, revocation checked on every call, errors."""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from functools import wraps
from typing import Any
from uuid import UUID

from flask import Flask, current_app, g, request
from flask_jwt_extended import JWTManager, create_access_token, decode_token
from jwt import InvalidSignatureError, InvalidTokenError

from authsvc.errors import AuthRequired, TokenExpired, TokenInvalid
from authsvc.services import sessions


def mint(user_id: UUID, session_id: UUID) -> tuple[str, int]:
    """An access token for `user_id` within `session_id`, and its lifetime in seconds."""
    ttl = current_app.config["JWT_ACCESS_TOKEN_EXPIRES"]
    token = create_access_token(identity=str(user_id), additional_claims={"sid": str(session_id)})
    return token, int(ttl.total_seconds())


ISSUER = "authsvc"
AUDIENCE = "authsvc"


def checked_session() -> Any:
    """This request's session check (with the user's rows when storage read them with it)."""
    return g.get("authsvc_session")


def current_ids() -> tuple[UUID, UUID]:
    """(user id, session id) of the verified access token of this request (check_claims)."""
    return g.authsvc_ids


def signed_in(view: Callable[..., Any]) -> Callable[..., Any]:
    """A view that needs a signed-in caller: verify_access() before it runs."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        verify_access()
        return view(*args, **kwargs)

    return wrapper


def verify_access() -> None:
    """What flask-jwt-extended's jwt_required() checks, for this service's header tokens: a
    Bearer token (AUTH_REQUIRED without one), verified (TOKEN_INVALID, TOKEN_EXPIRED), an access
    token, of a session still open (TOKEN_REVOKED) whose user is not banned (USER_BANNED).

    jwt_required() also parses the token's header again on every call (PyJWT checks it
    character by character), for callbacks this service does not use. The claims come from
    decode_token(), which VerifyingManager answers from memory for a token it verified before,
    and flask-jwt-extended's error handlers still answer what PyJWT refuses."""
    claims = decode_token(_bearer(request.headers.get("Authorization", "")))
    if claims.get("type", "access") != "access":
        raise TokenInvalid()
    check_session(claims)


def _bearer(raw: str) -> str:
    """The token of `Authorization: Bearer <token>`, read as flask-jwt-extended reads it (the
    header may list several credentials, comma-separated; exactly one must be Bearer)."""
    if raw.startswith("Bearer ") and len(raw) > 7 and " " not in raw[7:] and "," not in raw:
        return raw[7:]
    value = raw.strip().strip(",")
    bearers = [s for s in re.split(r",\s*", value) if s and s.split()[0] == "Bearer"]
    if len(bearers) != 1:
        raise AuthRequired()
    parts = bearers[0].split()
    if len(parts) != 2:
        # "Authorization: Bearer" with nothing after it carries no token at all.
        raise AuthRequired() if raw.strip().lower() in ("", "bearer") else TokenInvalid()
    return parts[1]


def check_session(claims: dict[str, Any]) -> None:
    """Revocation, checked on every call: the token's session must still be open
    (TokenRevoked). A session of another user raises TokenInvalid, a ban UserBanned. The
    check (with the user's rows, where storage read them with it) is kept for the view."""
    user_id, session_id = UUID(claims["sub"]), UUID(claims["sid"])
    stores = current_app.extensions["authsvc"].stores
    g.authsvc_session = sessions.check_access(stores, session_id, user_id)
    g.authsvc_ids = user_id, session_id


def key_id(key: str) -> str:
    """The `kid` header naming `key`: a short hash of it, never the key itself."""
    return hashlib.sha256(b"authsvc-jwt-kid:" + key.encode()).hexdigest()[:16]


class MalformedClaims(InvalidTokenError):
    """A token bearing our signature whose claims are not what mint() writes. It is a PyJWT
    InvalidTokenError, which flask-jwt-extended answers with the invalid-token callback
    (JWTManager._set_error_handler_callbacks): 401 TOKEN_INVALID."""


def _is_id(value: Any) -> bool:
    """`value` is a UUID as we write them (canonical, lower case)."""
    try:
        return isinstance(value, str) and str(UUID(value)) == value
    except ValueError:
        return False


def check_claims(claims: dict[str, Any]) -> None:
    """Refuse (MalformedClaims) the claims of a token whose signature verified unless they are
    what mint() writes: an `exp` (PyJWT checks it only when present: without one a token would
    never expire), a `jti`, and `sub` and `sid` as ids. Nothing after this sees a malformed
    claim."""
    if not isinstance(claims.get("exp"), int | float):
        raise MalformedClaims("the token's exp is missing or not a number")
    if not isinstance(claims.get("jti"), str) or not claims["jti"]:
        raise MalformedClaims("the token has no jti")
    if not (_is_id(claims.get("sub")) and _is_id(claims.get("sid"))):
        raise MalformedClaims("the token's sub or sid is not an id")


class SigningKeys:
    """The current key signs; it and the previous keys verify, each found by its `kid`."""

    def __init__(self, current: str, previous: Sequence[str] = ()) -> None:
        self.current = current
        self.current_kid = key_id(current)
        self._by_kid = {key_id(k): k for k in (*previous, current)}

    def for_header(self, header: dict[str, Any]) -> str:
        """The key to verify a token with, from its (unverified) header. A token without a
        `kid` predates key ids and was signed with the current key."""
        if "kid" not in header:
            return self.current
        kid = header["kid"]
        key = self._by_kid.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise InvalidSignatureError("the token names a key this service does not hold")
        return key


class VerifyingManager(JWTManager):
    """flask-jwt-extended's manager, remembering the tokens it has verified until they expire.

    A client sends the same access token on every call while it lives, and verifying it (PyJWT
    parses it four times, checking each part character by character, then the HMAC) was a
    quarter of the CPU of GET /me. The same bytes verify the same way until `exp`, so a token
    verified once is taken from memory until then. Everything that can change meanwhile is
    still checked on every call, after this: the session (revoked, logged out) and the ban,
    by the blocklist loader. A refused token (a bad signature, or claims check_claims
    refuses) is never remembered, and a changed one (a single character) is a different key.
    At most `max_tokens` are kept, the oldest leaving first.
    """

    def __init__(self, app: Flask, max_tokens: int = 4096) -> None:
        self.max_tokens = max_tokens
        self._verified: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        super().__init__(app)

    def _decode_jwt_from_config(
        self, encoded_token: str, csrf_value: Any = None, allow_expired: bool = False
    ) -> dict:
        plain = csrf_value is None and not allow_expired
        if plain:
            claims = self._verified.get(encoded_token)
            # PyJWT's own rule (leeway 0): a token is expired from `exp` on.
            if claims is not None and time.time() < claims["exp"]:
                return dict(claims)
        claims = super()._decode_jwt_from_config(encoded_token, csrf_value, allow_expired)
        check_claims(claims)
        if plain:
            self._remember(encoded_token, claims)
        return claims

    def _remember(self, encoded_token: str, claims: dict[str, Any]) -> None:
        with self._lock:
            while len(self._verified) >= self.max_tokens:
                del self._verified[next(iter(self._verified))]
            self._verified[encoded_token] = dict(claims)


def init_app(app: Flask, secret: str, access_ttl: int, previous: Sequence[str] = ()) -> None:
    """flask-jwt-extended for `app`: HS256 tokens signed with `secret` under its `kid`, verified
    with it or a `previous` key, and every JWT error answered in the envelope."""
    keys = SigningKeys(secret, previous)
    app.config.update(
        JWT_SECRET_KEY=secret,
        JWT_ALGORITHM="HS256",
        JWT_DECODE_ALGORITHMS=["HS256"],
        JWT_TOKEN_LOCATION=["headers"],
        JWT_ACCESS_TOKEN_EXPIRES=timedelta(seconds=access_ttl),
        JWT_ERROR_MESSAGE_KEY="message",
        # Tokens say who issued them and for whom, and only ours are taken (API.md, Tokens).
        JWT_ENCODE_ISSUER=ISSUER,
        JWT_DECODE_ISSUER=ISSUER,
        JWT_ENCODE_AUDIENCE=AUDIENCE,
        JWT_DECODE_AUDIENCE=AUDIENCE,
    )
    jwt = VerifyingManager(app)

    @jwt.encode_key_loader
    def signing_key(_identity: Any) -> str:
        return keys.current

    @jwt.additional_headers_loader
    def key_header(_identity: Any) -> dict[str, str]:
        return {"kid": keys.current_kid}

    @jwt.decode_key_loader
    def verification_key(header: dict, _payload: dict) -> str:
        return keys.for_header(header)

    @app.before_request
    def reject_non_ascii_authorization() -> None:
        # A JWT is ASCII; anything else cannot be one (and would trip the decoder).
        header = request.headers.get("Authorization")
        if header is not None and not header.isascii():
            raise TokenInvalid()

    def render(err: Any):
        return current_app.extensions["authsvc.render_error"](err)

    # verify_access() and the session check raise AUTH_REQUIRED and TOKEN_REVOKED themselves;
    # what PyJWT refuses in decode_token() reaches flask-jwt-extended's error handlers, and
    # these answer it.
    @jwt.invalid_token_loader
    def invalid(_reason: str):
        return render(TokenInvalid())

    @jwt.expired_token_loader
    def expired(_header: dict, _payload: dict):
        return render(TokenExpired())


def any_case_bearer(wsgi_app: Callable[..., Any]) -> Callable[..., Any]:
    """The WSGI app, with `Authorization: bearer <token>` read as `Bearer <token>`: an
    authentication scheme is case-insensitive (RFC 9110, 11.1), and flask-jwt-extended compares
    it exactly."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        value = environ.get("HTTP_AUTHORIZATION")
        if value and value[:7].lower() == "bearer " and not value.startswith("Bearer "):
            environ["HTTP_AUTHORIZATION"] = "Bearer " + value[7:]
        return wsgi_app(environ, start_response)

    return app
