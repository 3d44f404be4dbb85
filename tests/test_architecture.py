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
        name for name in imports_of(path)
        if any(name == f or name.startswith(f + ".") for f in forbidden)
    )


@pytest.mark.parametrize("path", modules("services"), ids=lambda p: p.name)
def test_services_import_no_web_framework_driver_or_concrete_store(path):
    forbidden = ("flask", "flask_jwt_extended", "flask_smorest", "werkzeug", "psycopg",
                 "psycopg_pool", "supabase", "postgrest", "authsvc.api", "authsvc.pages",
                 "authsvc.stores.postgres", "authsvc.stores.supabase", "authsvc.stores.pg")
    assert offending(path, forbidden) == []


@pytest.mark.parametrize("path", modules("stores"), ids=lambda p: p.name)
def test_stores_import_no_services_or_entrypoints(path):
    forbidden = ("flask", "authsvc.services", "authsvc.api", "authsvc.pages", "authsvc.cli")
    assert offending(path, forbidden) == []


def test_only_make_store_names_a_concrete_store():
    for path in PACKAGE.rglob("*.py"):
        if path.parent.name == "stores" or path.parent.parent.name == "stores":
            continue
        assert offending(path, ("authsvc.stores.postgres", "authsvc.stores.supabase")) == [], path


def test_leaves_import_nothing_of_ours_above_them():
    for leaf in ("errors.py", "config.py", "passwords.py"):
        names = imports_of(PACKAGE / leaf)
        ours = {n for n in names if n.startswith("authsvc")}
        assert ours <= {"authsvc.errors", "authsvc.config", "authsvc.passwords"}, (leaf, ours)


def test_error_codes_are_defined_once():
    source = (PACKAGE / "errors.py").read_text()
    from authsvc import errors

    codes = [cls.code for cls in vars(errors).values()
             if isinstance(cls, type) and issubclass(cls, errors.AuthError)
             and "code" in cls.__dict__]
    duplicated = {c for c in codes if codes.count(c) > 1 and c != "INTERNAL_ERROR"}
    assert not duplicated
    for path in PACKAGE.rglob("*.py"):
        if path.name == "errors.py":
            continue
        text = path.read_text()
        for code in ("EMAIL_TAKEN", "USERNAME_TAKEN", "SIGNUP_FAILED", "INVALID_CREDENTIALS"):
            assert f'"{code}"' not in text, f"{path} spells out {code}; use the class attribute"
    assert source
