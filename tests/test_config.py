"""Settings: production refuses weak secrets and weak hashing; development keeps a key."""

from __future__ import annotations

import pytest

from authsvc.config import (
    OWASP_MIN_MEMORY_KIB,
    OWASP_MIN_PARALLELISM,
    OWASP_MIN_TIME_COST,
    ConfigError,
    load_settings,
)
from authsvc.passwords import Hasher

STRONG = "q8Zr-4vLk_T1pXe9WmB2nYc7HsJ0dGf3AuK6oPiR5tEw"


def prod(**env):
    return {
        "AUTHSVC_ENV": "production",
        "DATABASE_URL": "postgresql://x@localhost/x",
        "JWT_SECRET_KEY": STRONG,
        **env,
    }


@pytest.mark.parametrize(
    "secret",
    ["", "short", "a" * 64, "secretsecretsecretsecretsecret12", "0123456789" * 4, "0123456789" * 3],
)
def test_production_refuses_a_missing_or_weak_jwt_secret_and_says_why(secret):
    with pytest.raises(ConfigError) as info:
        load_settings(prod(JWT_SECRET_KEY=secret))
    assert "JWT_SECRET_KEY" in str(info.value)
    assert "token_urlsafe" in str(info.value)  # says how to make a good one


def test_production_accepts_random_secrets_of_the_usual_sizes():
    import secrets

    for make in (
        lambda: secrets.token_hex(16),
        lambda: secrets.token_hex(32),
        lambda: secrets.token_urlsafe(32),
    ):
        for _ in range(200):
            secret = make()
            assert load_settings(prod(JWT_SECRET_KEY=secret)).jwt_secret_key == secret


def test_production_accepts_a_strong_secret():
    settings = load_settings(prod())
    assert settings.production and settings.jwt_secret_key == STRONG


def test_production_refuses_hashing_below_owasp_minimum():
    with pytest.raises(ConfigError, match="OWASP"):
        load_settings(prod(AUTHSVC_ARGON2_MEMORY_KIB="4096"))


def test_default_hash_parameters_meet_owasp_minimum():
    settings = load_settings(prod())
    assert settings.argon2_time_cost >= OWASP_MIN_TIME_COST
    assert settings.argon2_memory_kib >= OWASP_MIN_MEMORY_KIB
    assert settings.argon2_parallelism >= OWASP_MIN_PARALLELISM
    hasher = Hasher(
        settings.argon2_time_cost, settings.argon2_memory_kib, settings.argon2_parallelism
    )
    hashed = hasher.hash("a fine password")
    assert hashed.startswith("$argon2id$v=19$m=19456,t=2,p=1$")


def test_development_generates_and_keeps_a_secret_in_the_data_dir(tmp_path):
    env = {"AUTHSVC_DATA_DIR": str(tmp_path), "JWT_SECRET_KEY": ""}
    first = load_settings(env)
    second = load_settings(env)
    assert first.jwt_secret_key == second.jwt_secret_key
    assert len(first.jwt_secret_key) >= 32
    assert (tmp_path / "jwt_secret").stat().st_mode & 0o777 == 0o600


def test_rate_limits_off_in_production_is_a_warning():
    settings = load_settings(prod(AUTHSVC_RATE_LIMITS="off"))
    assert not settings.rate_limits
    assert any("RATE_LIMITS" in w for w in settings.warnings)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"AUTHSVC_ENV": "staging"}, "AUTHSVC_ENV"),
        ({"AUTHSVC_BACKEND": "mysql"}, "AUTHSVC_BACKEND"),
        ({"AUTHSVC_BACKEND": "supabase"}, "SUPABASE_URL"),
        ({"AUTHSVC_MAX_BODY_BYTES": "lots"}, "AUTHSVC_MAX_BODY_BYTES"),
        ({"AUTHSVC_RATE_LIMITS": "maybe"}, "AUTHSVC_RATE_LIMITS"),
    ],
)
def test_bad_settings_fail_at_start_with_a_sentence(tmp_path, env, message):
    with pytest.raises(ConfigError, match=message):
        load_settings({"AUTHSVC_DATA_DIR": str(tmp_path), **env})


def test_postgres_url_is_read_when_database_url_is_not(tmp_path):
    settings = load_settings(
        {
            "AUTHSVC_DATA_DIR": str(tmp_path),
            "DATABASE_URL": "",
            "POSTGRES_URL": "postgresql://u:p@h/db",
        }
    )
    assert settings.database_url == "postgresql://u:p@h/db"
    assert not settings.split
    assert "u:***@h" in repr(settings)


def test_a_different_auth_database_means_a_split_deployment(tmp_path):
    settings = load_settings(
        {
            "AUTHSVC_DATA_DIR": str(tmp_path),
            "DATABASE_URL": "postgresql://h/app",
            "AUTH_DATABASE_URL": "postgresql://h/auth",
        }
    )
    assert settings.split
