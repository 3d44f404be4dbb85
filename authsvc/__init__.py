"""authsvc: an authentication service whose signup never leaves half a user behind."""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from flask import Flask

from authsvc.config import Settings, load_settings
from authsvc.errors import AuthError, InternalError
from authsvc.passwords import Hasher
from authsvc.ratelimit import RateLimits
from authsvc.stores import Store, make_store

log = logging.getLogger("authsvc")

try:
    __version__ = metadata.version("authsvc")
except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    __version__ = "0.0.0"

STARTED_AT = datetime.now(UTC)


def git_sha() -> str | None:
    """The commit this code was built from: $GIT_SHA / $SOURCE_VERSION, else `git rev-parse`."""
    for name in ("GIT_SHA", "SOURCE_VERSION", "GIT_COMMIT"):
        if os.environ.get(name):
            return os.environ[name]
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
    """What the views need, kept on app.extensions["authsvc"] and handed to services."""

    settings: Settings
    store: Store
    hasher: Hasher
    rate_limits: RateLimits
    git_sha: str | None
    started_at: datetime = field(default_factory=lambda: STARTED_AT)

    @property
    def secret(self) -> bytes:
        return self.settings.jwt_secret_key.encode()

    def readiness(self) -> dict[str, str]:
        checks = dict(self.store.check())
        database_ok = all(v == "ok" for v in checks.values())
        checks = {
            "database": "ok"
            if database_ok
            else "; ".join(f"{k}: {v}" for k, v in checks.items() if v != "ok")
        }
        if not database_ok:
            checks["migrations"] = "unknown (database unreachable)"
            return checks
        try:
            status = self.store.migration_status()
        except AuthError as exc:
            checks["migrations"] = f"error: {exc.message}"
            return checks
        pending = status["pending"]
        checks["migrations"] = "ok" if not pending else f"pending: {', '.join(pending)}"
        return checks

    def version_info(self) -> dict[str, Any]:
        try:
            schema_version = self.store.migration_status()["schema_version"]
        except AuthError:
            schema_version = None
        return {
            "version": __version__,
            "git_sha": self.git_sha,
            "started_at": self.started_at.isoformat().replace("+00:00", "Z"),
            "schema_version": schema_version,
            "backend": self.settings.backend,
        }

    def check_idempotency_key(self, key: str) -> str:
        from authsvc.errors import ValidationFailed

        if not 1 <= len(key) <= 255 or not key.isprintable():
            raise ValidationFailed(
                details={"Idempotency-Key": ["Use 1 to 255 printable characters."]}
            )
        return key

    def lost_user(self) -> AuthError:
        return InternalError("The account was created but could not be read back; log in.")


def resolve_database(settings: Settings) -> Settings:
    """With no database configured, start (or reuse) the embedded one and point at it."""
    if settings.database_url:
        return settings
    from authsvc import embedded

    cluster = embedded.ensure_running(settings.data_dir)
    return settings.with_database(cluster.url)


def create_app(overrides: Mapping[str, Any] | None = None) -> Flask:
    """Build the service. `overrides` take the names of the environment variables."""
    from authsvc import errors, metrics, observability, tokens
    from authsvc.api import init_app as init_api
    from authsvc.pages import init_app as init_pages

    observability.configure_logging()
    settings = load_settings(overrides)
    for warning in settings.warnings:
        log.warning(warning)
    if not settings.database_url:
        settings = resolve_database(settings)
        embedded_store = make_store(settings, Hasher(1, 8, 1))
        try:
            embedded_store.migrate()  # the zero-configuration default migrates itself
        finally:
            embedded_store.close()

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.config["TESTING"] = bool((overrides or {}).get("TESTING", False))
    app.json.sort_keys = False  # type: ignore[attr-defined]
    hasher = Hasher(
        settings.argon2_time_cost, settings.argon2_memory_kib, settings.argon2_parallelism
    )
    runtime = Runtime(
        settings=settings,
        store=make_store(settings, hasher),
        hasher=hasher,
        rate_limits=RateLimits(
            settings.rate_limits,
            {"signup": settings.rate_limit_signup, "login": settings.rate_limit_login},
            settings.redis_url,
        ),
        git_sha=git_sha(),
    )
    app.extensions["authsvc"] = runtime

    observability.init_app(app)
    errors.init_app(app)
    tokens.init_app(app, settings.jwt_secret_key, settings.access_token_ttl)
    init_api(app)
    init_pages(app)
    metrics.init_app(app, settings, runtime.store)
    return app
