"""Imports point down only: entrypoints -> services -> stores -> leaves (DESIGN.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "authsvc"


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def modules(sub: str) -> list[Path]:
    return sorted((PACKAGE / sub).rglob("*.py"))


def offending(path: Path, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        name
        for name in imports_of(path)
        if any(name == f or name.startswith(f + ".") for f in forbidden)
    )


MAX_MODULE_LINES = 400
DRIVERS = ("psycopg", "psycopg_pool", "supabase", "supabase_auth", "postgrest", "httpx", "redis")
WEB = ("flask", "flask_jwt_extended", "flask_smorest", "werkzeug", "jinja2", "itsdangerous")


def rel(path: Path) -> str:
    return str(path.relative_to(PACKAGE.parent))


@pytest.mark.parametrize("path", modules("services"), ids=rel)
def test_services_import_no_web_framework_no_driver_and_no_concrete_store(path):
    forbidden = (
        *WEB,
        *DRIVERS,
        "authsvc.api",
        "authsvc.pages",
        "authsvc.tokens",
        "authsvc.stores.pg",
        "authsvc.stores.supabase",
    )
    assert offending(path, forbidden) == []


@pytest.mark.parametrize("path", modules("stores"), ids=rel)
def test_stores_import_no_service_and_no_entrypoint(path):
    forbidden = (
        *WEB,
        "authsvc.services",
        "authsvc.api",
        "authsvc.pages",
        "authsvc.cli",
        "authsvc.tokens",
    )
    assert offending(path, forbidden) == []


def test_only_make_stores_names_a_backend():
    for path in PACKAGE.rglob("*.py"):
        if PACKAGE / "stores" in path.parents:
            continue
        assert offending(path, ("authsvc.stores.pg", "authsvc.stores.supabase")) == [], rel(path)


def test_postgres_stores_never_import_supabase():
    for path in (PACKAGE / "stores" / "pg").rglob("*.py"):
        assert (
            offending(path, ("supabase", "supabase_auth", "postgrest", "authsvc.stores.supabase"))
            == []
        ), rel(path)


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=rel)
def test_no_module_is_over_the_size_limit(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{rel(path)} has {lines} lines: split it by concept"


def test_no_view_verifies_a_token_without_its_session():
    # tokens.signed_in / verify_access check the session (revocation, bans) on every call;
    # flask-jwt-extended's own decorators would only verify the token.
    unchecked = ("flask_jwt_extended.jwt_required", "flask_jwt_extended.verify_jwt_in_request")
    found = [rel(p) for p in sorted(PACKAGE.rglob("*.py")) if offending(p, unchecked)]
    assert found == []
    assert offending(PACKAGE / "tokens.py", ("flask_jwt_extended.decode_token",)) != []


def test_the_checks_above_see_imports():
    # A guard for the guards: the walker must find what these files are known to import.
    assert "psycopg" in imports_of(PACKAGE / "stores" / "pg" / "database.py")
    assert "flask" in imports_of(PACKAGE / "api" / "auth.py")
    assert offending(PACKAGE / "stores" / "pg" / "database.py", ("psycopg",)) != []


def test_leaves_import_nothing_of_ours_above_them():
    leaves = (
        "authsvc.errors",
        "authsvc.config",
        "authsvc.envvars",
        "authsvc.passwords",
        "authsvc.hashgate",
        "authsvc.redaction",
        "authsvc.reasons",
    )
    for leaf in (
        "errors.py",
        "config.py",
        "envvars.py",
        "passwords.py",
        "hashgate.py",
        "redaction.py",
        "reasons.py",
    ):
        ours = {n for n in imports_of(PACKAGE / leaf) if n.startswith("authsvc")}
        assert offending(PACKAGE / leaf, leaves) == sorted(ours), (leaf, ours)


def test_error_codes_are_defined_once():
    from authsvc import errors

    codes = [
        cls.code
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.AuthError) and "code" in cls.__dict__
    ]
    duplicated = {c for c in codes if codes.count(c) > 1 and c != "INTERNAL_ERROR"}
    assert not duplicated
    for path in PACKAGE.rglob("*.py"):
        if path.name == "errors.py":
            continue
        text = path.read_text()
        for code in ("EMAIL_TAKEN", "USERNAME_TAKEN", "SIGNUP_FAILED", "INVALID_CREDENTIALS"):
            assert f'"{code}"' not in text, f"{path} spells out {code}; use the class attribute"
    assert errors.AuthError.for_code("EMAIL_TAKEN") is errors.EmailTaken
