"""Settings read from the environment once, validated at start-up."""

from __future__ import annotations

import importlib.util
import math
import os
import secrets
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

# OWASP's password storage cheat sheet: argon2id with m=19 MiB, t=2, p=1 at the least.
OWASP_MIN_TIME_COST = 2
OWASP_MIN_MEMORY_KIB = 19456
OWASP_MIN_PARALLELISM = 1

MIN_SECRET_LENGTH = 32
_SECRET_FIELDS = {
    "jwt_secret_key", "supabase_service_role_key", "supabase_anon_key", "admin_key"
}


class ConfigError(Exception):
    """The configuration cannot be used; the message says what to set."""


@dataclass(frozen=True)
class Settings:
    env: str = "development"
    backend: str = "postgres"
    database_url: str | None = None
    auth_database_url: str | None = None
    data_dir: Path = Path(".authsvc")
    jwt_secret_key: str = ""
    jwt_secret_generated: bool = False
    access_token_ttl: int = 900
    refresh_token_ttl: int = 30 * 24 * 3600
    supabase_url: str | None = None
    supabase_service_role_key: str | None = None
    supabase_anon_key: str | None = None
    supabase_email_confirm: bool = True
    redis_url: str | None = None
    rate_limits: bool = True
    rate_limit_signup: str = "10 per minute;50 per hour"
    rate_limit_login: str = "10 per minute;100 per hour"
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

    def __repr__(self) -> str:
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _SECRET_FIELDS and value:
                value = "<redacted>"
            elif f.name in ("database_url", "auth_database_url") and value:
                value = redact_url(value)
            shown.append(f"{f.name}={value!r}")
        return f"Settings({', '.join(shown)})"

    def with_database(self, url: str) -> Settings:
        """These settings, pointed at `url` for both tables (the embedded default)."""
        return replace(self, database_url=url, auth_database_url=url)


def redact_url(url: str) -> str:
    """A connection URL with its password replaced, for logs and `doctor`."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        parts = parts._replace(netloc=netloc)
    return urlunsplit(parts)


def _int(env: Mapping[str, Any], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a whole number, got {raw!r}.") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}.")
    return value


def _bool(env: Mapping[str, Any], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if isinstance(raw, bool):
        return raw
    lowered = str(raw).strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be on or off, got {raw!r}.")


def _metrics_dir(env: Mapping[str, Any]) -> Path | None:
    """PROMETHEUS_MULTIPROC_DIR, where each worker process keeps its metrics, when it is set."""
    raw = env.get("PROMETHEUS_MULTIPROC_DIR")
    if not raw:
        return None
    path = Path(str(raw))
    if not path.is_dir() or not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(
            "PROMETHEUS_MULTIPROC_DIR must be a writable directory (every worker process keeps "
            f"its metrics there), got {str(raw)!r}."
        )
    return path


def secret_weakness(secret: str) -> str | None:
    """Why `secret` is too weak to sign tokens with, or None when it is strong enough."""
    if not secret:
        return "it is not set"
    if len(secret) < MIN_SECRET_LENGTH:
        return f"it is {len(secret)} characters long; use at least {MIN_SECRET_LENGTH}"
    counts = Counter(secret)
    entropy = -sum(c / len(secret) * math.log2(c / len(secret)) for c in counts.values())
    # A rough estimate from character frequencies (it undercounts short random strings, so the
    # bar is lower than the 128 bits a good key has): refuses repeats and simple patterns.
    if len(counts) < 8 or entropy * len(secret) < 80:
        return "it repeats too few distinct characters to be unguessable"
    if any(secret == (secret[:k] * (len(secret) // k + 1))[: len(secret)] for k in range(1, 17)):
        return "it repeats one short pattern"
    lowered = secret.lower()
    for word in ("secret", "changeme", "password", "example", "jwt-secret"):
        if word in lowered and len(secret) < 64:
            return f"it contains the word {word!r}"
    return None


def default_data_dir(cwd: Path, home: Path) -> Path:
    """Where the embedded database and local state live when AUTHSVC_DATA_DIR is not set: the
    nearest `.authsvc` up from `cwd`, else one at the nearest project root (a directory with
    pyproject.toml or .git), else a per-user directory. Never a fresh one wherever a command
    happens to run."""
    for directory in (cwd, *cwd.parents):
        if (directory / ".authsvc").is_dir():
            return directory / ".authsvc"
    for directory in (cwd, *cwd.parents):
        if (directory / "pyproject.toml").is_file() or (directory / ".git").exists():
            return directory / ".authsvc"
    return home / ".local" / "share" / "authsvc"


def _rate_limit(env: Mapping[str, Any], name: str, default: str) -> str:
    from limits import parse_many

    spec = str(env.get(name) or default)
    try:
        parse_many(spec)
    except ValueError:
        raise ConfigError(
            f"{name} must be limits like '10 per minute;100 per hour', got {spec!r}."
        ) from None
    return spec


def _git_sha(env: Mapping[str, Any]) -> str | None:
    for name in ("GIT_SHA", "SOURCE_VERSION", "GIT_COMMIT"):
        if env.get(name):
            return str(env[name])
    return None


def _jwt_secret(env: Mapping[str, Any], production: bool, data_dir: Path) -> tuple[str, bool]:
    secret = str(env.get("JWT_SECRET_KEY") or "")
    if production:
        weakness = secret_weakness(secret)
        if weakness:
            raise ConfigError(
                "AUTHSVC_ENV=production needs a strong JWT_SECRET_KEY, but "
                f"{weakness}. Generate one with: "
                "python -c 'import secrets; print(secrets.token_urlsafe(48))'"
            )
        return secret, False
    if secret:
        return secret, False
    # Development: one random key per data dir, kept so tokens survive a restart.
    path = data_dir / "jwt_secret"
    if path.exists():
        return path.read_text().strip(), True
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secret + "\n")
    return secret, True


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
    metrics = _bool(env, "AUTHSVC_METRICS", False)

    return Settings(
        env=app_env,
        backend=backend,
        database_url=database_url,
        auth_database_url=auth_database_url,
        data_dir=data_dir,
        jwt_secret_key=jwt_secret,
        jwt_secret_generated=generated,
        access_token_ttl=_int(env, "AUTHSVC_ACCESS_TOKEN_TTL", 900, 10),
        refresh_token_ttl=_int(env, "AUTHSVC_REFRESH_TOKEN_TTL", 30 * 24 * 3600, 60),
        supabase_url=supabase_url,
        supabase_service_role_key=service_key,
        supabase_anon_key=anon_key,
        supabase_email_confirm=_bool(env, "AUTHSVC_SUPABASE_EMAIL_CONFIRM", True),
        redis_url=env.get("REDIS_URL") or None,
        rate_limits=rate_limits,
        rate_limit_signup=_rate_limit(env, "AUTHSVC_RATE_LIMIT_SIGNUP", Settings.rate_limit_signup),
        rate_limit_login=_rate_limit(env, "AUTHSVC_RATE_LIMIT_LOGIN", Settings.rate_limit_login),
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
    )


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
