"""authsvc: an authentication service whose signup never leaves half a user behind."""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from flask import Flask

from authsvc.config import Settings, load_settings
from authsvc.passwords import Hasher
from authsvc.ratelimit import RateLimits
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
    started_at: datetime = field(default_factory=lambda: STARTED_AT)

    @property
    def secret(self) -> bytes:
        return self.settings.jwt_secret_key.encode()

    def context(self, user_agent: str | None = None) -> Context:
        """What the use cases need for one request (access tokens are minted by
        flask-jwt-extended, inside the request)."""
        from authsvc import tokens

        return Context(
            stores=self.stores,
            hasher=self.hasher,
            mint=tokens.mint,
            refresh_ttl=self.settings.refresh_token_ttl,
            secret=self.secret,
            user_agent=user_agent,
            origin=request_origin(user_agent),
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


def create_app(settings: Settings | Mapping[str, Any]) -> Flask:
    """Build the service from settings (or a mapping of the environment's names, for tests).

    With no database configured (development only: production refuses at load_settings), the
    embedded Postgres is started, or found running, and migrated.
    """
    from authsvc import embedded, errors, metrics, observability, tokens
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
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    runtime = Runtime(
        settings=settings,
        stores=make_stores(settings),
        hasher=hasher_for(settings),
        rate_limits=RateLimits(
            settings.rate_limits,
            {"signup": settings.rate_limit_signup, "login": settings.rate_limit_login},
            settings.redis_url,
        ),
    )
    app.extensions["authsvc"] = runtime

    observability.init_app(app)
    errors.init_app(app)
    tokens.init_app(app, settings.jwt_secret_key, settings.access_token_ttl)
    init_api(app)
    init_pages(app)
    metrics.init_app(app, settings, runtime.stores.pool_stats)
    return app
