"""Supabase mode: PostgREST forwards a failing constraint's DETAIL as `details`; no log line
carries it."""

from __future__ import annotations

import json

from authsvc.errors import SignupFailed
from tests.supabase import fake as sb


def test_postgrest_details_with_row_values_reach_no_log_line(auth, fake, capfd):
    def refused(request):
        row = json.loads(request.content)
        return sb.rest_error(
            400,
            "23514",
            'new row for relation "users" violates check constraint "users_username_check"',
            f"Failing row contains ({row['id']}, {row['email']}, {row['username']}, null, "
            "2026-01-01 00:00:00+00, 2026-01-01 00:00:00+00).",
        )

    fake.fail("insert_profile", refused)
    body = auth.signup("victim@example.com", username="victim_name", expect=500)
    assert body["error"]["code"] == SignupFailed.code
    assert body["error"]["details"]["reason"] == "check_violation"
    err = capfd.readouterr().err
    entries = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    tracebacks = [e["traceback"] for e in entries if e.get("traceback")]
    assert any("'details': '<redacted>'" in t for t in tracebacks), tracebacks
    for value in ("victim@example.com", "victim_name"):
        assert value not in err
