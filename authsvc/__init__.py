"""authsvc: an authentication service whose signup never leaves half a user behind."""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cached_property
from importlib import metadata
from pathlib import Path
from typing import Any

from flask import Flask

from authsvc.background import Purger
from authsvc.config import Settings, load_settings
from authsvc.mail.queue import MailQueue
from authsvc.passwords import Hasher
from authsvc.ratelimit import RateLimits, redis_storage
from authsvc.sealing import Sealer
from authsvc.services.accounts import Context
from authsvc.services.audit import Origin
from authsvc.stores import Stores, make_stores

log = logging.getLogger("authsvc")

try:
    __version__ = metadata.version("authsvc")
except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    __version__ = "0.0.0"

STARTED_AT = datetime.now(UTC)


def git_sha(settings: Settings) -> str | None:
    """The commit this code was built from: $GIT_SHA / $SOURCE_VERSION, else `git rev-parse`."""
    if settings.git_sha:
        return settings.git_sha
    for where in (Path.cwd(), Path(__file__).resolve().parent.parent):
        try:
            out = subprocess.run(  # noqa: S603
                ["git", "-C", str(where), "rev-parse", "HEAD"],  # noqa: S607
                capture_output=True,
                text=True,
                timeout=2,
            )
        except (OSError, subprocess.SubprocessError):
            continue
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    return None


@dataclass
class Runtime:
    """The service's parts, wired once; kept on app.extensions["authsvc"]."""

    settings: Settings
    stores: Stores
    hasher: Hasher
    rate_limits: RateLimits
    sealer: Sealer
    mail: MailQueue | None = None
    started_at: datetime = field(default_factory=lambda: STARTED_AT)

    @cached_property
    def secrets(self) -> tuple[bytes, ...]:
        """The signing secrets, current first (previous ones still verify)."""
        return tuple(s.encode() for s in self.settings.verification_keys)

    def context(self, user_agent: str | None = None) -> Context:
        """What the use cases need for one request (access tokens are minted by
        flask-jwt-extended, inside the request)."""
        from authsvc import tokens

        return Context(
            stores=self.stores,
            hasher=self.hasher,
            mint=tokens.mint,
            refresh_ttl=self.settings.refresh_token_ttl,
            secrets=self.secrets,
            sealer=self.sealer,
            idempotency_ttl=self.settings.idempotency_ttl,
            refresh_reuse_interval=self.settings.refresh_reuse_interval,
            user_agent=user_agent,
            mail=self.mail,
            public_url=self.settings.public_url,
            require_email_confirmation=self.settings.require_email_confirmation,
            origin=request_origin(user_agent),
        )


def lifecycle_limits(settings: Settings) -> dict[str, str]:
    """The account lifecycle's rate limits by name (anonymous signups harder than signups)."""
    return {
        "anonymous": settings.rate_limit_anonymous,
        "verify": settings.rate_limit_verify,
        "password_forgot": settings.rate_limit_forgot,
        "password_reset": settings.rate_limit_reset,
    }


def mail_queue(settings: Settings) -> MailQueue:
    """The mail sender for these settings (a bad SMTP_URL stops the start here)."""
    from authsvc.mail import make_mailer

    return MailQueue(
        make_mailer(settings),
        settings.mail_from,
        attempts=settings.mail_attempts,
        pause=settings.mail_retry_seconds,
    )


def request_origin(user_agent: str | None = None) -> Origin:
    """Where the current request comes from (request id, client address, user agent), for the
    audit log; an empty Origin outside a request."""
    from flask import g, has_request_context, request

    if not has_request_context():
        return Origin(user_agent=user_agent)
    return Origin(
        request_id=g.get("request_id"),
        ip=request.remote_addr,
        user_agent=user_agent if user_agent is not None else request.headers.get("User-Agent"),
    )


def hasher_for(settings: Settings) -> Hasher:
    return Hasher(
        settings.argon2_time_cost, settings.argon2_memory_kib, settings.argon2_parallelism
    )


def rate_limits_for(settings: Settings, stores: Stores) -> RateLimits:
    """The rate limits, counted in Redis with REDIS_URL, else in the service's own Postgres."""
    storage = (
        redis_storage(settings.redis_url, float(settings.connect_timeout))
        if settings.redis_url
        else stores.rate_limit_storage
    )
    rules = {
        "signup": settings.rate_limit_signup,
        "login": settings.rate_limit_login,
        "refresh": settings.rate_limit_refresh,
        **lifecycle_limits(settings),
    }
    return RateLimits(settings.rate_limits, rules, storage)


def create_app(settings: Settings | Mapping[str, Any]) -> Flask:
    """Build the service from settings (or a mapping of the environment's names, for tests).

    With no database configured (development only: production refuses at load_settings), the
    embedded Postgres is started, or found running, and migrated.
    """
    from authsvc import bodies, embedded, error_handlers, metrics, observability, tokens
    from authsvc.api import init_app as init_api
    from authsvc.pages import init_app as init_pages

    observability.configure_logging()
    if not isinstance(settings, Settings):
        settings = load_settings(settings)
    for warning in settings.warnings:
        log.warning(warning)
    if not settings.database_url:
        settings, _cluster = embedded.with_database(settings)
        embedded_stores = make_stores(settings)
        try:
            embedded_stores.admin.migrate()  # the zero-configuration default migrates itself
        finally:
            embedded_stores.close()
    settings = replace(settings, git_sha=git_sha(settings))

    app = Flask(__name__)
    app.request_class = bodies.Request  # the body limit holds for chunked bodies too
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.wsgi_app = tokens.any_case_bearer(app.wsgi_app)  # type: ignore[method-assign]
    if settings.trusted_proxies:
        # The client's address is the one the N-th proxy saw (X-Forwarded-For, N entries from
        # the right); with no trusted proxy the header is ignored and the socket's address used.
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app,
            x_for=settings.trusted_proxies,
            x_proto=0,
            x_host=0,
            x_port=0,
            x_prefix=0,
        )
    stores = make_stores(settings)
    runtime = Runtime(
        settings=settings,
        stores=stores,
        hasher=hasher_for(settings),
        rate_limits=rate_limits_for(settings, stores),
        sealer=Sealer(list(settings.verification_keys), "idempotency responses"),
        mail=mail_queue(settings),
    )
    # The mail sender stops (finishing what is queued) wherever the stores are closed: in a
    # gunicorn worker's exit, and in every test that closes its app's stores.
    runtime.stores._close.insert(0, runtime.mail.close)
    app.extensions["authsvc"] = runtime
    purger = Purger(runtime.stores, settings)
    app.before_request(purger.ensure_started)

    observability.init_app(app)
    error_handlers.init_app(app)
    tokens.init_app(
        app, settings.jwt_secret_key, settings.access_token_ttl, settings.previous_secret_keys
    )
    init_api(app)
    init_pages(app)
    metrics.init_app(app, settings, runtime.stores.pool_stats)
    return app
