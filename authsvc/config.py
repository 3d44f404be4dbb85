"""Settings read from the environment once, validated at start-up."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from authsvc.envvars import (  # noqa: F401 - ConfigError, secret_weakness: config's API
    MIN_SECRET_LENGTH,
    SUPAVISOR_TRANSACTION_PORT,
    ConfigError,
    _bool,
    _check_postgres_urls,
    _db_pooler,
    _git_sha,
    _int,
    _jwt_secret,
    _metrics_dir,
    _previous_secrets,
    _rate_limit,
    _redis_url,
    default_data_dir,
    secret_weakness,
)
from authsvc.redaction import redact_url

# OWASP's password storage cheat sheet: argon2id with m=19 MiB, t=2, p=1 at the least.
OWASP_MIN_TIME_COST = 2
OWASP_MIN_MEMORY_KIB = 19456
OWASP_MIN_PARALLELISM = 1

_SECRET_FIELDS = {
    "jwt_secret_key",
    "previous_secret_keys",
    "supabase_service_role_key",
    "supabase_anon_key",
    "admin_key",
}
_URL_FIELDS = {
    "database_url",
    "auth_database_url",
    "database_direct_url",
    "auth_database_direct_url",
    "redis_url",
    "smtp_url",
}


@dataclass(frozen=True)
class Settings:
    env: str = "development"
    backend: str = "postgres"
    database_url: str | None = None
    auth_database_url: str | None = None
    # Behind a transaction-mode pooler (PgBouncer, Supavisor on 6543): "transaction"; else "none".
    db_pooler: str = "none"
    # The same databases without the pooler, for work that needs a session of its own.
    database_direct_url: str | None = None
    auth_database_direct_url: str | None = None
    data_dir: Path = Path(".authsvc")
    jwt_secret_key: str = ""
    jwt_secret_generated: bool = False
    # Former JWT_SECRET_KEYs (AUTHSVC_PREVIOUS_SECRET_KEYS): they verify, only the current signs.
    previous_secret_keys: tuple[str, ...] = ()
    access_token_ttl: int = 900
    refresh_token_ttl: int = 30 * 24 * 3600
    refresh_reuse_interval: int = 10
    spent_token_retention: int = 24 * 3600
    idempotency_ttl: int = 24 * 3600
    purge_interval: int = 3600
    supabase_url: str | None = None
    supabase_service_role_key: str | None = None
    supabase_anon_key: str | None = None
    supabase_email_confirm: bool = False
    redis_url: str | None = None
    rate_limits: bool = True
    rate_limit_signup: str = "10 per minute;50 per hour"
    rate_limit_login: str = "10 per minute;100 per hour"
    rate_limit_refresh: str = "30 per minute;300 per hour"
    # Proxies in front of the service whose X-Forwarded-For entries are believed (0: none).
    trusted_proxies: int = 0
    argon2_time_cost: int = OWASP_MIN_TIME_COST
    argon2_memory_kib: int = OWASP_MIN_MEMORY_KIB
    argon2_parallelism: int = OWASP_MIN_PARALLELISM
    max_body_bytes: int = 65536
    reconcile_grace_seconds: int = 300
    connect_timeout: int = 3
    pool_timeout: float = 3.0
    pool_max_size: int = 10
    statement_timeout_ms: int = 15000
    host: str = "127.0.0.1"
    port: int = 8000
    git_sha: str | None = None
    metrics: bool = False
    metrics_dir: Path | None = None
    # The account lifecycle: mail, links, confirmation, anonymous accounts, their limits.
    smtp_url: str | None = None  # parsed (and refused when bad) by authsvc.mail at start-up
    mail_from: str = "authsvc <no-reply@localhost>"
    public_url: str = "http://127.0.0.1:8000"
    require_email_confirmation: bool = False
    anonymous_max_idle_days: int = 30
    mail_attempts: int = 4
    mail_retry_seconds: float = 2.0
    rate_limit_anonymous: str = "3 per minute;10 per hour"
    rate_limit_verify: str = "5 per minute;20 per hour"
    rate_limit_forgot: str = "3 per minute;10 per hour"
    rate_limit_reset: str = "5 per minute;20 per hour"
    warnings: tuple[str, ...] = field(default_factory=tuple)
    # Account lifecycle (admin): the admin API's key and how long the audit log is kept.
    admin_key: str = ""
    audit_retention_days: int = 365

    @property
    def production(self) -> bool:
        return self.env == "production"

    @property
    def split(self) -> bool:
        """Identities and profiles live in two databases."""
        return bool(self.auth_database_url) and self.auth_database_url != self.database_url

    def direct(self, command: str) -> Settings:
        """These settings on the direct URLs (when given), for `command`'s work that needs a
        session of its own; ConfigError naming the variable to set when a transaction-mode
        pooler stands in front of a database and no direct URL is given."""
        pairs = [("DATABASE_DIRECT_URL", self.database_direct_url)]
        if self.split:
            pairs.append(("AUTH_DATABASE_DIRECT_URL", self.auth_database_direct_url))
        missing = [name for name, url in pairs if not url]
        if self.db_pooler == "transaction" and missing:
            raise ConfigError(
                f"{command} needs a direct connection to the database, not the "
                "transaction-mode pooler (AUTHSVC_DB_POOLER=transaction), which may run each "
                "transaction on another server connection and so holds no session and no "
                f"session lock. Set {' and '.join(missing)} to the direct (unpooled) connection "
                "string (Supabase: the direct connection, port 5432)."
            )
        return replace(
            self,
            database_url=self.database_direct_url or self.database_url,
            auth_database_url=self.auth_database_direct_url or self.auth_database_url,
            db_pooler="none",
        )

    def __repr__(self) -> str:
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _SECRET_FIELDS and value:
                value = "<redacted>"
            elif f.name in _URL_FIELDS and value:
                value = redact_url(value)
            shown.append(f"{f.name}={value!r}")
        return f"Settings({', '.join(shown)})"

    @property
    def verification_keys(self) -> tuple[str, ...]:
        """Every key that verifies tokens, cookies and idempotency fingerprints: the current
        one first, then the previous ones in the order given."""
        return (self.jwt_secret_key, *self.previous_secret_keys)

    def with_database(self, url: str) -> Settings:
        """These settings, pointed at `url` for both tables (the embedded default)."""
        return replace(
            self,
            database_url=url,
            auth_database_url=url,
            db_pooler="none",
            database_direct_url=None,
            auth_database_direct_url=None,
        )


def load_settings(env: Mapping[str, Any], default_env: str = "development") -> Settings:
    """Validated Settings from `env` (the environment's names and values). Only the
    entrypoints (wsgi.py, the CLI) hand in os.environ; `default_env` is what AUTHSVC_ENV means
    when unset (production under gunicorn, development for `authsvc serve`)."""
    warnings: list[str] = []

    app_env = str(env.get("AUTHSVC_ENV") or default_env).strip().lower()
    if app_env not in ("development", "production"):
        raise ConfigError(f"AUTHSVC_ENV must be development or production, got {app_env!r}.")
    production = app_env == "production"

    backend = str(env.get("AUTHSVC_BACKEND") or "postgres").strip().lower()
    if backend not in ("postgres", "supabase"):
        raise ConfigError(f"AUTHSVC_BACKEND must be postgres or supabase, got {backend!r}.")

    _check_postgres_urls(env)
    database_url = env.get("DATABASE_URL") or env.get("POSTGRES_URL") or None
    auth_database_url = env.get("AUTH_DATABASE_URL") or database_url
    if auth_database_url and not database_url:
        raise ConfigError("AUTH_DATABASE_URL is set but DATABASE_URL is not; set both.")
    if production and not database_url:
        raise ConfigError(
            "AUTHSVC_ENV=production needs DATABASE_URL (the embedded database is for "
            "development only): set DATABASE_URL=postgresql://user:password@host/dbname."
        )

    if env.get("AUTHSVC_DATA_DIR"):
        data_dir = Path(str(env["AUTHSVC_DATA_DIR"])).expanduser().absolute()
    else:
        data_dir = default_data_dir(Path.cwd(), Path(str(env.get("HOME") or Path.home())))

    direct_url = env.get("DATABASE_DIRECT_URL") or None
    auth_direct_url = env.get("AUTH_DATABASE_DIRECT_URL") or None
    if (direct_url or auth_direct_url) and not database_url:
        raise ConfigError(
            "DATABASE_DIRECT_URL or AUTH_DATABASE_DIRECT_URL is set but DATABASE_URL is not; "
            "set DATABASE_URL too (the pooled connection string the service runs on)."
        )
    if auth_direct_url is None and auth_database_url == database_url:
        auth_direct_url = direct_url  # one database: one direct URL
    pooler = _db_pooler(env, database_url, auth_database_url, warnings)

    time_cost = _int(env, "AUTHSVC_ARGON2_TIME_COST", OWASP_MIN_TIME_COST, 1)
    memory_kib = _int(env, "AUTHSVC_ARGON2_MEMORY_KIB", OWASP_MIN_MEMORY_KIB, 8)
    parallelism = _int(env, "AUTHSVC_ARGON2_PARALLELISM", OWASP_MIN_PARALLELISM, 1)
    if production and (
        time_cost < OWASP_MIN_TIME_COST
        or memory_kib < OWASP_MIN_MEMORY_KIB
        or parallelism < OWASP_MIN_PARALLELISM
    ):
        raise ConfigError(
            "AUTHSVC_ARGON2_* are below OWASP's minimum for argon2id "
            f"(time cost {OWASP_MIN_TIME_COST}, memory {OWASP_MIN_MEMORY_KIB} KiB, "
            f"parallelism {OWASP_MIN_PARALLELISM}); production refuses weaker hashes."
        )

    rate_limits = _bool(env, "AUTHSVC_RATE_LIMITS", True)
    if production and not rate_limits:
        warnings.append("AUTHSVC_RATE_LIMITS=off in production: logins and signups are unthrottled")

    supabase_url = env.get("SUPABASE_URL") or None
    service_key = env.get("SUPABASE_SERVICE_ROLE_KEY") or None
    anon_key = env.get("SUPABASE_ANON_KEY") or None
    if backend == "supabase":
        missing = [
            name
            for name, value in (
                ("SUPABASE_URL", supabase_url),
                ("SUPABASE_SERVICE_ROLE_KEY", service_key),
                ("SUPABASE_ANON_KEY", anon_key),
            )
            if not value
        ]
        if missing:
            raise ConfigError(f"AUTHSVC_BACKEND=supabase needs {', '.join(missing)}.")
        if importlib.util.find_spec("supabase") is None:
            raise ConfigError(
                "AUTHSVC_BACKEND=supabase needs the supabase package: "
                "pip install 'authsvc[supabase]' (or pip install supabase)."
            )

    jwt_secret, generated = _jwt_secret(env, production, data_dir)
    previous_secrets = _previous_secrets(env, production, jwt_secret)
    metrics = _bool(env, "AUTHSVC_METRICS", False)

    lifecycle = _lifecycle(env, production, warnings)

    return Settings(
        env=app_env,
        backend=backend,
        database_url=database_url,
        auth_database_url=auth_database_url,
        db_pooler=pooler,
        database_direct_url=direct_url,
        auth_database_direct_url=auth_direct_url,
        data_dir=data_dir,
        jwt_secret_key=jwt_secret,
        jwt_secret_generated=generated,
        previous_secret_keys=previous_secrets,
        access_token_ttl=_int(env, "AUTHSVC_ACCESS_TOKEN_TTL", 900, 10),
        refresh_token_ttl=_int(env, "AUTHSVC_REFRESH_TOKEN_TTL", 30 * 24 * 3600, 60),
        refresh_reuse_interval=_int(env, "AUTHSVC_REFRESH_REUSE_INTERVAL", 10, 0),
        spent_token_retention=_int(env, "AUTHSVC_SPENT_TOKEN_RETENTION_SECONDS", 24 * 3600, 0),
        idempotency_ttl=_int(env, "AUTHSVC_IDEMPOTENCY_TTL_SECONDS", 24 * 3600, 60),
        purge_interval=_int(env, "AUTHSVC_PURGE_INTERVAL_SECONDS", 3600, 0),
        supabase_url=supabase_url,
        supabase_service_role_key=service_key,
        supabase_anon_key=anon_key,
        supabase_email_confirm=_bool(env, "AUTHSVC_SUPABASE_EMAIL_CONFIRM", False),
        redis_url=_redis_url(env),
        rate_limits=rate_limits,
        rate_limit_signup=_rate_limit(env, "AUTHSVC_RATE_LIMIT_SIGNUP", Settings.rate_limit_signup),
        rate_limit_login=_rate_limit(env, "AUTHSVC_RATE_LIMIT_LOGIN", Settings.rate_limit_login),
        rate_limit_refresh=_rate_limit(
            env, "AUTHSVC_RATE_LIMIT_REFRESH", Settings.rate_limit_refresh
        ),
        trusted_proxies=_int(env, "AUTHSVC_TRUSTED_PROXIES", 0, 0),
        argon2_time_cost=time_cost,
        argon2_memory_kib=memory_kib,
        argon2_parallelism=parallelism,
        max_body_bytes=_int(env, "AUTHSVC_MAX_BODY_BYTES", 65536, 256),
        reconcile_grace_seconds=_int(env, "AUTHSVC_RECONCILE_GRACE_SECONDS", 300, 0),
        connect_timeout=_int(env, "AUTHSVC_DB_CONNECT_TIMEOUT", 3, 1),
        pool_timeout=float(_int(env, "AUTHSVC_DB_POOL_TIMEOUT", 3, 1)),
        pool_max_size=_int(env, "AUTHSVC_DB_POOL_SIZE", 10, 1),
        statement_timeout_ms=_int(env, "AUTHSVC_DB_STATEMENT_TIMEOUT_MS", 15000, 0),
        host=str(env.get("HOST") or "127.0.0.1"),
        port=_int(env, "PORT", 8000, 0),
        git_sha=_git_sha(env),
        metrics=metrics,
        metrics_dir=_metrics_dir(env) if metrics else None,
        **_lifecycle_admin(env, production, warnings),  # before `warnings`: it may add some
        warnings=tuple(warnings),
        **lifecycle,
    )


def _lifecycle(env: Mapping[str, Any], production: bool, warnings: list[str]) -> dict[str, Any]:
    """The account lifecycle's settings: mail, links, confirmation, anonymous accounts."""
    host, port = str(env.get("HOST") or "127.0.0.1"), _int(env, "PORT", 8000, 0)
    public_url = str(env.get("AUTHSVC_PUBLIC_URL") or f"http://{host}:{port}").rstrip("/")
    if not public_url.startswith(("http://", "https://")) or "?" in public_url:
        raise ConfigError(
            "AUTHSVC_PUBLIC_URL must be where people reach this service, like "
            f"https://auth.example.com (links in mail point there), got {public_url!r}."
        )
    smtp_url = str(env.get("SMTP_URL") or "") or None
    require = _bool(env, "AUTHSVC_REQUIRE_EMAIL_CONFIRMATION", False)
    if production and not smtp_url:
        if require:
            raise ConfigError(
                "AUTHSVC_REQUIRE_EMAIL_CONFIRMATION=on needs SMTP_URL in production (nobody "
                "could confirm an address): set SMTP_URL=smtp://host:587?starttls=1."
            )
        warnings.append("SMTP_URL is not set: verification and reset mail cannot be sent")
    limits = {
        "rate_limit_anonymous": "AUTHSVC_RATE_LIMIT_ANONYMOUS",
        "rate_limit_verify": "AUTHSVC_RATE_LIMIT_VERIFY",
        "rate_limit_forgot": "AUTHSVC_RATE_LIMIT_PASSWORD_FORGOT",
        "rate_limit_reset": "AUTHSVC_RATE_LIMIT_PASSWORD_RESET",
    }
    return {
        "smtp_url": smtp_url,
        "mail_from": str(env.get("AUTHSVC_MAIL_FROM") or Settings.mail_from),
        "public_url": public_url,
        "require_email_confirmation": require,
        "anonymous_max_idle_days": _int(env, "AUTHSVC_ANONYMOUS_MAX_IDLE_DAYS", 30, 1),
        "mail_attempts": _int(env, "AUTHSVC_MAIL_ATTEMPTS", 4, 1),
        "mail_retry_seconds": _int(env, "AUTHSVC_MAIL_RETRY_MS", 2000, 0) / 1000,
        **{
            name: _rate_limit(env, variable, getattr(Settings, name))
            for name, variable in limits.items()
        },
    }


# -- account lifecycle (admin): AUTHSVC_ADMIN_KEY, AUTHSVC_AUDIT_RETENTION_DAYS ------------------


def _lifecycle_admin(env: Mapping[str, Any], production: bool, warnings: list[str]) -> dict:
    """The admin API's key (production refuses a weak one) and the audit log's retention."""
    key = str(env.get("AUTHSVC_ADMIN_KEY") or "").strip()
    weakness = secret_weakness(key) if key else None
    if weakness and production:
        raise ConfigError(
            f"AUTHSVC_ADMIN_KEY is too weak for production: {weakness}. Generate one with: "
            "python -c 'import secrets; print(secrets.token_urlsafe(48))', or unset it and "
            "grant the admin role instead (authsvc users grant-admin EMAIL)."
        )
    if weakness:
        warnings.append(f"AUTHSVC_ADMIN_KEY is weak ({weakness}); production would refuse it")
    return {
        "admin_key": key,
        "audit_retention_days": _int(env, "AUTHSVC_AUDIT_RETENTION_DAYS", 365, 1),
    }
