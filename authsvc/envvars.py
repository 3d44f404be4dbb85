"""Reading one environment variable at a time: parsed, checked, and refused with a sentence
saying what to set (load_settings in config.py puts them together)."""

from __future__ import annotations

import importlib.util
import math
import os
import re
import secrets
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from authsvc.redaction import redact_url

MIN_SECRET_LENGTH = 32
# Supavisor's transaction mode listens on 6543 (session mode and direct connections on 5432).
SUPAVISOR_TRANSACTION_PORT = 6543


class ConfigError(Exception):
    """The configuration cannot be used; the message says what to set."""


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


def _db_pooler(
    env: Mapping[str, Any], url: str | None, auth_url: str | None, warnings: list[str]
) -> str:
    """AUTHSVC_DB_POOLER: none or transaction; a warning when a URL looks like Supavisor's
    transaction mode and the setting does not say so."""
    raw = str(env.get("AUTHSVC_DB_POOLER") or "").strip().lower()
    if raw not in ("", "none", "transaction"):
        raise ConfigError(
            f"AUTHSVC_DB_POOLER must be none or transaction, got {raw!r}: transaction when "
            "DATABASE_URL goes through PgBouncer or Supavisor in transaction mode."
        )
    if not raw:
        from urllib.parse import urlsplit

        for name, value in (("DATABASE_URL", url), ("AUTH_DATABASE_URL", auth_url)):
            try:
                port = urlsplit(value).port if value else None
            except ValueError:
                port = None
            if port == SUPAVISOR_TRANSACTION_PORT:
                warnings.append(
                    f"{name} uses port {port}, Supavisor's transaction mode: set "
                    "AUTHSVC_DB_POOLER=transaction (and DATABASE_DIRECT_URL for migrations), "
                    "or the service's prepared statements will fail at random"
                )
                break
    return raw or "none"


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
        items = parse_many(spec)
    except ValueError:
        items = []
    if not items or any(item.amount < 1 for item in items):
        raise ConfigError(
            f"{name} must be limits like '10 per minute;100 per hour' (each allowing at least "
            f"one request), got {spec!r}."
        )
    return spec


REDIS_SCHEMES = ("redis", "rediss", "redis+unix")


def _redis_url(env: Mapping[str, Any]) -> str | None:
    """REDIS_URL, checked: a redis:// URL and the redis package to speak to it."""
    from urllib.parse import urlsplit

    url = str(env.get("REDIS_URL") or "").strip()
    if not url:
        return None
    try:
        scheme = urlsplit(url).scheme
    except ValueError:
        scheme = ""
    if scheme not in REDIS_SCHEMES:
        raise ConfigError(
            f"REDIS_URL must be a {', '.join(s + '://' for s in REDIS_SCHEMES)} URL, got "
            f"{redact_url(url)!r}."
        )
    if importlib.util.find_spec("redis") is None:
        raise ConfigError(
            "REDIS_URL needs the redis package: pip install 'authsvc[redis]' (or pip install "
            "redis)."
        )
    return url


POSTGRES_URL_VARIABLES = (
    "DATABASE_URL",
    "POSTGRES_URL",
    "AUTH_DATABASE_URL",
    "DATABASE_DIRECT_URL",
    "AUTH_DATABASE_DIRECT_URL",
)
_KEYWORD_CONNINFO = re.compile(r"^\s*[A-Za-z_]+\s*=")


def _check_postgres_urls(env: Mapping[str, Any]) -> None:
    """Each Postgres variable set is a connection string libpq reads: a postgresql:// (or
    postgres://) URL, or keyword=value pairs; anything else is refused here, not by a
    traceback (or a "retry in a few seconds") at the first connection."""
    for name in POSTGRES_URL_VARIABLES:
        url = str(env.get(name) or "").strip()
        if not url or _KEYWORD_CONNINFO.match(url):
            continue
        if not url.startswith(("postgresql://", "postgres://")):
            raise ConfigError(
                f"{name} must be a postgresql://user:password@host:port/dbname URL (or libpq's "
                f"host=... dbname=... form), got {redact_url(url)!r}."
            )


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


def _previous_secrets(env: Mapping[str, Any], production: bool, current: str) -> tuple[str, ...]:
    """AUTHSVC_PREVIOUS_SECRET_KEYS: former signing keys, comma-separated, that still verify.

    Production holds them to the same bar as JWT_SECRET_KEY: a weak key that still verifies
    lets anyone who guesses it forge tokens and cookies just as well as a weak current one."""
    raw = str(env.get("AUTHSVC_PREVIOUS_SECRET_KEYS") or "")
    keys: list[str] = []
    for position, key in enumerate((k.strip() for k in raw.split(",")), start=1):
        if not key or key == current or key in keys:
            continue
        weakness = secret_weakness(key) if production else None
        if weakness:
            raise ConfigError(
                f"AUTHSVC_PREVIOUS_SECRET_KEYS: key {position} is too weak to keep verifying "
                f"tokens in production ({weakness}). Drop it from the list (tokens signed "
                "with it are then refused and their users log in again)."
            )
        keys.append(key)
    return tuple(keys)
