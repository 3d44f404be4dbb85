"""`python -m bench --quick` runs end to end and writes a table that holds every row.

Measures nothing against a clock: the numbers belong to people reading the table.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OURS = (
    "healthz",
    "signup",
    "login",
    "login (wrong password)",
    "login (unknown email)",
    "refresh",
    "me",
)
PEER = ("healthz", "signup", "login", "me")


def _rows(data: dict, system: str) -> dict[str, dict]:
    return {r["operation"]: r for r in data["table"]["rows"] if r["system"] == system}


def test_the_bench_runs_at_tiny_size_and_writes_the_table_json_and_chart(tmp_path: Path):
    # The timeout only stops a hung run; nothing here is judged by how long it took.
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--results", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    assert "system       operation" in done.stdout
    assert "targets:" in done.stdout

    [json_file] = tmp_path.glob("bench-*.json")
    data = json.loads(json_file.read_text())
    png = json_file.with_suffix(".png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    assert (
        json_file.with_suffix(".txt").read_text().strip()
        == done.stdout.split("\nwritten: ")[0].strip()
    )

    # The ceiling's cost is the one the running service really stores: OWASP's minimum.
    params = data["table"]["ceilings"]["authsvc"]["parameters"]
    assert (params["type"], params["time_cost"], params["memory_kib"], params["parallelism"]) == (
        "id",
        2,
        19456,
        1,
    )
    assert data["table"]["ceilings"]["authsvc"]["rate"] > 0

    ours = _rows(data, "authsvc")
    assert set(ours) == set(OURS)
    for op, row in ours.items():
        assert row["requests"] > 0, op
        # The failure rows count any answer other than a refusal as an error.
        assert row["errors"] == 0, (op, row["error_kinds"])
        if op != "healthz":
            assert row["ratio"] is not None and row["ratio"] > 0, op

    # The load client's own CPU was measured (and counted out of the hash ceiling).
    assert sum(r["client_cpu_s"] for r in ours.values()) > 0
    assert ours["signup"]["ceiling_kind"].startswith("hash")

    if shutil.which("node") and shutil.which("npm"):
        theirs = _rows(data, "better-auth")
        assert set(theirs) == set(PEER), data.get("peer_status")
        for op, row in theirs.items():
            assert row["requests"] > 0 and row["errors"] == 0, (op, row["error_kinds"])
        assert data["table"]["repeat_summary"]["me_over_get_session"]["n"] >= 1

    # Behind PgBouncer (installed by scripts/install.sh --test): each operation direct, then
    # pooled, without an error, with what the pooler passed on counted.
    pooler = data["pooler"]
    if shutil.which("pgbouncer") or Path("/usr/sbin/pgbouncer").exists():
        rows = pooler["rows"]
        assert [(r["where"], r["operation"]) for r in rows] == [
            (where, op)
            for op in ("signup", "login", "refresh", "me")
            for where in ("direct", "pgbouncer")
        ], pooler
        for r in rows:
            assert r["requests"] > 0 and r["errors"] == 0, (r["where"], r["error_kinds"])
        for r in rows[1::2]:
            # At least one transaction per request went through the pooler (a row whose
            # requests bypassed it would count none) and nothing refused a statement there.
            assert r["xacts_per_req"] >= 1 and r["statements_per_req"] >= r["xacts_per_req"]
            assert r["vs_direct"] > 0
        assert "behind a pooler" in done.stdout
    else:
        assert "skipped" in pooler

    scale = data["scale"]
    for size in ("at_small", "at_large"):
        for op in ("signup", "login"):
            assert scale[size][op]["requests"] > 0 and scale[size][op]["errors"] == 0
    # reconcile really scanned: it found exactly the drift the bench planted.
    assert scale["reconcile_one"]["counts_match"], scale["reconcile_one"]
    assert scale["reconcile_split"]["counts_match"], scale["reconcile_split"]
    purge = scale["purge"]
    if purge["available"]:
        assert purge["exit"] == 0, purge["output"]
        # Live tokens of live sessions are never purged.
        assert purge["after"]["live"] == purge["before"]["live"]
    else:
        assert "purge: not available" in done.stdout

    # The full run's crowded hash (skipped by --quick): measured in threads at the stored
    # cost, shown beside the ceiling and taken out of each hashing row's CPU.
    sys.path.insert(0, str(REPO))
    from bench import ceiling, report

    crowded = ceiling.argon2_rate(params, 0.3, processes=1, threads=2)
    assert crowded["threads"] == 2 and crowded["hashes"] >= 2 and crowded["cpu_ms_per_hash"] > 0
    data["table"]["ceilings"]["authsvc"]["crowded"] = crowded
    text = "\n".join(report.table_lines(data))
    assert "the same hash, 2 at once per core" in text
    assert text.count("rest beside a crowded hash") == 4  # signup and the three logins

    assert {t["target"].split(" ")[0] for t in data["targets"]} >= {
        "signup",
        "login",
        "reconcile",
        "ahead",
    }
