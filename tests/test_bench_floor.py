"""`python -m bench.floor --quick` serves authsvc and the bare floor app side by side and
measures every row of both without an error.

Measures nothing against a clock: the numbers belong to people reading the output.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_the_floor_comparison_runs_at_tiny_size(tmp_path: Path):
    out = tmp_path / "floor.json"
    # The timeout only stops a hung run; nothing here is judged by how long it took.
    done = subprocess.run(
        [sys.executable, "-m", "bench.floor", "--quick", "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    data = json.loads(out.read_text())
    assert data["ceiling"] and all(rate > 0 for rate in data["ceiling"])
    assert (data["cost"]["time_cost"], data["cost"]["memory_kib"]) == (2, 19456)
    assert set(data["rows"]) == {"signup", "login", "light", "me"}
    for name, systems in data["rows"].items():
        for system in ("authsvc", "floor"):
            [run] = systems[system]
            # A floor answer that is an error (no such session, a wrong password) counts here.
            assert run["rps"] > 0 and run["errors"] == 0, (name, system, run)
            assert run["server_ms"] > 0, (name, system)
        # Both sides' session checks and logins reach Postgres.
        if name != "light":
            assert systems["authsvc"][0]["pg_ms"] > 0 and systems["floor"][0]["pg_ms"] > 0, name
    assert "me c=32" in done.stdout and "floor" in done.stdout
