"""What a Supabase API key claims to be, read without verifying it and never logged."""

from __future__ import annotations

import base64
import binascii
import json
from urllib.parse import urlsplit


def key_role(key: str | None) -> tuple[str | None, str | None]:
    """(role, project ref) an API key claims, read without verifying it.

    Legacy keys are JWTs whose payload says `role: anon | service_role` and `ref`; the newer
    keys say what they are in their prefix (`sb_publishable_...`, `sb_secret_...`).
    """
    if not key:
        return None, None
    if key.startswith("sb_secret_"):
        return "service_role", None
    if key.startswith("sb_publishable_"):
        return "anon", None
    parts = key.split(".")
    if len(parts) != 3:
        return None, None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return None, None
    if not isinstance(payload, dict):
        return None, None
    return payload.get("role"), payload.get("ref")


def key_problems(url: str | None, service_key: str | None, anon_key: str | None) -> list[str]:
    """What is wrong with the two keys, in sentences that never include a key."""
    service_role, service_ref = key_role(service_key)
    anon_role, anon_ref = key_role(anon_key)
    if service_role == "anon" and anon_role == "service_role":
        return [
            "SUPABASE_SERVICE_ROLE_KEY and SUPABASE_ANON_KEY are swapped -> exchange their values"
        ]
    problems = []
    if service_role != "service_role":
        problems.append(
            "SUPABASE_SERVICE_ROLE_KEY is "
            + (f"a {service_role!r} key" if service_role else "not a Supabase API key")
            + " -> set the service_role (secret) key from Project Settings -> API keys"
        )
    if anon_role != "anon":
        problems.append(
            "SUPABASE_ANON_KEY is "
            + (f"a {anon_role!r} key" if anon_role else "not a Supabase API key")
            + " -> set the anon (publishable) key; a secret key there would bypass row-level "
            "security for every sign-in"
        )
    host = urlsplit(url or "").hostname or ""
    project = host.split(".")[0] if host.endswith(".supabase.co") else None
    for name, ref in (("SUPABASE_SERVICE_ROLE_KEY", service_ref), ("SUPABASE_ANON_KEY", anon_ref)):
        if project and ref and ref != project:
            problems.append(
                f"{name} belongs to project {ref!r}, but SUPABASE_URL points at {project!r}"
            )
    return problems
