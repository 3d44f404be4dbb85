"""The table as text, the targets it is read against, and the same data as JSON and a PNG chart."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

NOT_LIKE_FOR_LIKE = [
    "Hashes differ: authsvc argon2id (t=2, m=19456 KiB, p=1), Better Auth scrypt (N=16384, "
    "r=16, p=1). Raw signup/login req/s are not comparable; each side's ratio to its own "
    "hash ceiling is.",
    "A costlier hash hides overhead: the same milliseconds of everything else are a smaller "
    "share of a 60 ms scrypt than of a 19 ms argon2id, so compare the CPU section's 'rest' "
    "(CPU a request spends outside the hash) as well as the ratios.",
    "Signup writes: authsvc an identity, a profile (verified on return) and a session with a "
    "refresh token; Better Auth a user, a credential account and a session.",
    "Login answers: authsvc a JWT access token and a rotating refresh token; Better Auth a "
    "signed session cookie.",
    "GET /me verifies a JWT, checks its session is not revoked and reads the profile; "
    "get-session verifies the cookie's signature and reads the session and the user.",
    "Refresh: Better Auth has no refresh-token rotation (sessions slide), so that row is "
    "authsvc's alone; so are the login-failure rows.",
    "Light endpoints (the ceiling of refresh and /me): authsvc GET /healthz, Better Auth "
    "GET /api/auth/ok; neither touches the database.",
    "Logging: authsvc writes one JSON access-log line for every request, /healthz included, "
    "and echoes or makes an X-Request-ID; the peer's server logs nothing per request.",
    "Servers: gunicorn -w 2 (gthread, 4 threads, argon2id hashes gated to one per core across "
    "the workers) against node:cluster with 2 workers (no such gate); both "
    "with rate limiting off and 10 database connections per worker, on one Postgres.",
]


def _fmt(v: Any, spec: str = ".1f") -> str:
    if v is None:
        return "-"
    return format(v, spec)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.0f}%"


def spread(values: list[float]) -> dict[str, float] | None:
    """min, median and max of several runs (None when there are none)."""
    if not values:
        return None
    return {
        "min": min(values),
        "median": statistics.median(values),
        "max": max(values),
        "n": len(values),
    }


def summarize_repeats(repeats: list[dict[str, Any]]) -> dict[str, Any]:
    """The spread of /me, /healthz, get-session and their ratios over the repeats."""
    out: dict[str, Any] = {
        "me_rps": spread([r["me"]["rps"] for r in repeats]),
        "healthz_rps": spread([r["healthz"]["rps"] for r in repeats]),
        "me_over_healthz": spread(
            [r["me"]["rps"] / r["healthz"]["rps"] for r in repeats if r["healthz"]["rps"]]
        ),
        "me_errors": sum(r["me"]["errors"] for r in repeats),
    }
    if repeats and "get_session" in repeats[0]:
        out["get_session_rps"] = spread([r["get_session"]["rps"] for r in repeats])
        out["ok_rps"] = spread([r["ok"]["rps"] for r in repeats])
        out["me_over_get_session"] = spread(
            [r["me"]["rps"] / r["get_session"]["rps"] for r in repeats if r["get_session"]["rps"]]
        )
        out["get_session_errors"] = sum(r["get_session"]["errors"] for r in repeats)
    return out


def _row(rows: list[dict[str, Any]], system: str, op: str, c: int) -> dict[str, Any] | None:
    return next(
        (
            r
            for r in rows
            if r["system"] == system and r["operation"] == op and r["concurrency"] == c
        ),
        None,
    )


def targets(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of the issue with what this run measured and whether it was met."""
    rows = data.get("table", {}).get("rows", [])
    out: list[dict[str, Any]] = []

    def add(name: str, measured: str, met: bool | None) -> None:
        out.append(
            {"target": name, "measured": measured, "met": None if met is None else bool(met)}
        )

    c_mid = 8 if any(r["concurrency"] == 8 for r in rows) else None
    for op in ("signup", "login"):
        # Met only when both readings agree: throughput against the hash rate sampled before
        # the row (as the target is stated) and the same in CPU time (which a busy machine
        # does not move).
        r = _row(rows, "authsvc", op, c_mid) if c_mid else None
        if r and r["ratio"] and r["cpu_ratio"]:
            add(
                f"{op} at c=8 >= 90% of the hash ceiling",
                f"{_pct(r['ratio'])} by throughput, {_pct(r['cpu_ratio'])} by CPU time",
                r["ratio"] >= 0.9 and r["cpu_ratio"] >= 0.9 and r["errors"] == 0,
            )
        else:
            add(f"{op} at c=8 >= 90% of the hash ceiling", "not measured", None)
    rep = data.get("table", {}).get("repeat_summary") or {}
    top = data.get("table", {}).get("top_concurrency", "?")
    s = rep.get("me_over_healthz")
    add(
        f"GET /me at c={top} >= 50% of /healthz, every run",
        f"{_pct(s['min'])} .. {_pct(s['max'])} (median {_pct(s['median'])}, {s['n']} runs)"
        if s
        else "not measured",
        s["min"] >= 0.5 if s else None,
    )
    s = rep.get("me_over_get_session")
    add(
        f"GET /me at c={top} >= 1.5x Better Auth get-session, every run",
        f"{s['min']:.2f}x .. {s['max']:.2f}x (median {s['median']:.2f}x, {s['n']} runs)"
        if s
        else "peer not run",
        s["min"] >= 1.5 if s else None,
    )
    scale = data.get("scale") or {}
    for op in ("signup", "login"):
        a = (scale.get("at_small") or {}).get(op)
        b = (scale.get("at_large") or {}).get(op)
        if a and b and a["p50_ms"]:
            growth = b["p50_ms"] / a["p50_ms"] - 1
            add(
                f"{op} p50 at {scale['users']:,} within 10% of at {scale['small_users']:,}",
                f"{a['p50_ms']:.1f} -> {b['p50_ms']:.1f} ms ({100 * growth:+.0f}%)",
                growth <= 0.10,
            )
        else:
            add(f"{op} p50 at a million within 10% of at a thousand", "not measured", None)
    for key, limit, label in (
        ("reconcile_one", 10, "one database"),
        ("reconcile_split", 30, "split"),
    ):
        r = scale.get(key)
        if r and "elapsed_ms" in r and r.get("elapsed_ms") is not None:
            add(
                f"reconcile over {scale['users']:,} identities ({label}) < {limit} s",
                f"{r['wall_s']:.1f} s wall ({r['elapsed_ms'] / 1000:.1f} s reported)",
                r["wall_s"] < limit and r.get("counts_match", False),
            )
        else:
            add(
                f"reconcile ({label}) < {limit} s",
                "not measured" if not r else f"failed: {r.get('error', r)}",
                None if not r else False,
            )
    if "better-auth" in data.get("table", {}).get("ceilings", {}):
        behind = []
        for r in rows:
            if r["system"] != "authsvc":
                continue
            p = _row(rows, "better-auth", r["operation"], r["concurrency"])
            if p is None:
                continue
            # Different hashes: signup and login compare each side's ratio to its own ceiling,
            # by throughput and by CPU time; the rest compare requests a second.
            keys = ("ratio", "cpu_ratio") if r["operation"] in ("signup", "login") else ("rps",)
            lost = [k for k in keys if (r.get(k) or 0) <= (p.get(k) or 0)]
            if lost:
                behind.append(
                    f"{r['operation']} c={r['concurrency']}"
                    + (f" ({', '.join(lost)})" if len(keys) > 1 else "")
                )
        add(
            "ahead of Better Auth on every like-for-like row",
            "behind on: " + ", ".join(behind) if behind else "ahead on every row",
            not behind,
        )
    else:
        add("ahead of Better Auth on every like-for-like row", "peer not run", None)
    return out


def text(data: dict[str, Any]) -> str:
    """The whole report as the table people read."""
    meta = data["meta"]
    lines = [
        f"authsvc bench  {meta['started']}  commit {meta['commit']}  {meta['cores']} cores  "
        f"load avg at start {meta['loadavg_start']}, at end {meta.get('loadavg_end', '-')}",
    ]
    if meta.get("label"):
        lines.append(f"NOTE: {meta['label']}")
    lines.append(f"server: {meta['server']}")
    if "table" in data:
        lines.extend(table_lines(data))
    if "profile" in data:
        from bench.profile import lines as profile_lines

        lines.append("")
        lines.extend(profile_lines(data["profile"]))
    if "pooler" in data:
        lines.append("")
        lines.extend(pooler_lines(data["pooler"]))
    scale = data.get("scale")
    if scale:
        lines.append("")
        lines.extend(scale_lines(scale))
    lines.append("\ntargets:")
    for tg in data["targets"]:
        mark = {True: "met ", False: "MISS", None: "n/a "}[tg["met"]]
        lines.append(f"  [{mark}] {tg['target']}: {tg['measured']}")
    lines.append("\nnot like for like:")
    lines.extend(f"  - {n}" for n in NOT_LIKE_FOR_LIKE)
    return "\n".join(lines)


def table_lines(data: dict[str, Any]) -> list[str]:
    """The ceilings, the rows, the spread of repeated runs and the CPU per request."""
    t = data["table"]
    meta = data["meta"]
    lines: list[str] = []
    c_ours = t["ceilings"]["authsvc"]
    p = c_ours["parameters"]
    lines.append(
        f"hash ceiling, authsvc: argon2id t={p['time_cost']} m={p['memory_kib']} KiB "
        f"p={p['parallelism']} (read back from a stored hash): {c_ours['rate']:.1f}/s on "
        f"{meta['cores']} cores ({c_ours['spread'][0]:.1f} .. {c_ours['spread'][1]:.1f} over "
        f"{len(c_ours['samples'])} samples): a hash takes {1000 / c_ours['per_core']:.1f} ms "
        f"of wall time per core, {c_ours['cpu_ms_per_hash']:.1f} ms of CPU"
    )
    crowded = c_ours.get("crowded")
    if crowded and c_ours.get("cpu_ms_per_hash"):
        more = crowded["cpu_ms_per_hash"] / c_ours["cpu_ms_per_hash"] - 1
        lines.append(
            f"  the same hash, {crowded['threads']} at once per core (as a server's threads would "
            f"run them with more requests in flight than cores): {crowded['rate']:.1f}/s, "
            f"{crowded['cpu_ms_per_hash']:.1f} ms of CPU a hash ({more:+.0%}): each walks "
            f"{p['memory_kib'] // 1024} MiB, and more of them than cores evict each other from "
            "the caches; authsvc's hash gate (authsvc/hashgate.py) runs one per core at a time "
            "across its workers, as the ceiling does"
        )
    if "better-auth" in t["ceilings"]:
        c_peer = t["ceilings"]["better-auth"]
        lines.append(
            f"hash ceiling, Better Auth: scrypt N=16384 r=16 p=1 (its own hashPassword): "
            f"{c_peer['rate']:.1f}/s ({c_peer['spread'][0]:.1f} .. {c_peer['spread'][1]:.1f}), "
            f"{1000 / c_peer['per_core']:.1f} ms of wall time per core, "
            f"{_fmt(c_peer.get('cpu_ms_per_hash'))} ms of CPU"
        )
    else:
        lines.append(f"peer: {data.get('peer_status', 'not run')}")
    for system, c in t["ceilings"].items():
        low, high = c["spread"]
        if low < 0.8 * high:
            lines.append(
                f"WARNING: {system}'s hash rate moved from {low:.1f} to {high:.1f}/s during the "
                "run: other work shared the cores, so throughput ratios are unreliable; the "
                "cpu column is not moved by it."
            )
    lines.append(
        "ceiling: signup/login = per-core hash rate, sampled just before the row, x (cores - "
        "the load client's measured cores); refresh and me = the same side's light endpoint "
        "at the same concurrency. ratio = req/s / ceiling. cpu = the same in CPU time: the "
        "ceiling's CPU per request / the row's (server + db), unmoved by other work on the "
        "machine. client = the load client's share of one core; server/db = CPU ms per "
        "request of the server's processes and of Postgres."
    )
    lines.append("")
    header = (
        f"{'system':12} {'operation':24} {'c':>3} {'req/s':>8} {'p50 ms':>8} "
        f"{'p95 ms':>8} {'p99 ms':>8} {'errors':>6} {'client':>7} {'server':>7} "
        f"{'db':>5} {'ceiling':>8} {'ratio':>6} {'cpu':>5}"
    )
    lines.append(header)
    lines.append("-" * len(header))
    order = [
        "healthz",
        "signup",
        "login",
        "login (wrong password)",
        "login (unknown email)",
        "refresh",
        "me",
    ]
    rows = sorted(
        t["rows"],
        key=lambda r: (order.index(r["operation"]), r["concurrency"], r["system"] != "authsvc"),
    )
    for r in rows:
        name = (
            r["operation"]
            if r["system"] == "authsvc"
            else {
                "healthz": "ok",
                "me": "get-session",
                "signup": "sign-up/email",
                "login": "sign-in/email",
            }.get(r["operation"], r["operation"])
        )
        if r["operation"] == "me" and r["system"] == "authsvc":
            name = "GET /me"
        lines.append(
            f"{r['system']:12} {name:24} {r['concurrency']:>3} {r['rps']:>8.1f} "
            f"{r['p50_ms']:>8.1f} {r['p95_ms']:>8.1f} {r['p99_ms']:>8.1f} {r['errors']:>6} "
            f"{100 * r['client_cores']:>6.0f}% {r['server_cpu_ms_per_req']:>7.2f} "
            f"{r['db_cpu_ms_per_req']:>5.2f} {_fmt(r.get('ceiling')):>8} "
            f"{_pct(r.get('ratio')):>6} {_pct(r.get('cpu_ratio')):>5}"
        )
    wrong = next((r for r in t["rows"] if r["operation"] == "login (wrong password)"), None)
    unknown = next((r for r in t["rows"] if r["operation"] == "login (unknown email)"), None)
    if wrong and unknown and wrong["p50_ms"]:
        lines.append(
            f"\nlogin p50, unknown email / wrong password: "
            f"{unknown['p50_ms'] / wrong['p50_ms']:.2f} in the rows above (run one "
            "after the other); 1.0 means no account enumeration through timing"
        )
    pairs = [p["ratio"] for p in t.get("timing_pairs", []) if p["ratio"]]
    if pairs:
        lines.append(
            f"  in {len(pairs)} alternating pairs of short runs at "
            f"c={t['failure_concurrency']}: median "
            f"{statistics.median(pairs):.2f} (each: " + ", ".join(f"{p:.2f}" for p in pairs) + ")"
        )
    rep = t.get("repeat_summary") or {}
    if rep.get("me_rps"):
        lines.append(
            f"\nspread over {rep['me_rps']['n']} runs at c={t['top_concurrency']} "
            "(min / median / max):"
        )
        for key, label in (
            ("me_rps", "authsvc GET /me req/s"),
            ("healthz_rps", "authsvc /healthz req/s"),
            ("me_over_healthz", "authsvc /me / /healthz"),
            ("get_session_rps", "Better Auth get-session req/s"),
            ("ok_rps", "Better Auth /ok req/s"),
            ("me_over_get_session", "authsvc /me / get-session"),
        ):
            s = rep.get(key)
            if not s:
                continue
            if "over" in key:
                lines.append(f"  {label:32} {s['min']:.2f} / {s['median']:.2f} / {s['max']:.2f}")
            else:
                lines.append(f"  {label:32} {s['min']:.0f} / {s['median']:.0f} / {s['max']:.0f}")
        lines.append(
            "  each run: /me req/s (CPU share of the busier worker), /healthz req/s"
            + (", get-session req/s" if rep.get("get_session_rps") else "")
        )
        for i, r in enumerate(t["repeats"], 1):
            share = (r["me"].get("worker_cpu_share") or [0])[0]
            extra = f", {r['get_session']['rps']:.0f}" if "get_session" in r else ""
            lines.append(
                f"    {i}: {r['me']['rps']:.0f} ({100 * share:.0f}%), "
                f"{r['healthz']['rps']:.0f}{extra}"
            )
    lines.extend(cpu_lines(t))
    return lines


def cpu_lines(t: dict[str, Any]) -> list[str]:
    """Where each request's CPU goes, per system at the middle concurrency: the overheads."""
    concurrencies = sorted({r["concurrency"] for r in t["rows"]})
    c = concurrencies[len(concurrencies) // 2]
    lines = [
        f"\nCPU per request at c={c}, ms (server = the service's processes; hash = the "
        "ceiling's CPU time per hash; rest = server - hash; beside a crowded hash = server - "
        "the CPU time of a hash crowded as above):"
    ]
    for r in t["rows"]:
        if r["concurrency"] != c or not r["requests"]:
            continue
        hash_ms = t["ceilings"].get(r["system"], {}).get("cpu_ms_per_hash")
        hashing = r["operation"].startswith(("signup", "login"))
        detail = ""
        if hashing and hash_ms:
            rest = r["server_cpu_ms_per_req"] - hash_ms
            detail = f"  hash {hash_ms:6.2f}  rest {rest:6.2f}"
            crowded = t["ceilings"].get(r["system"], {}).get("crowded")
            if crowded:
                own = r["server_cpu_ms_per_req"] - crowded["cpu_ms_per_hash"]
                detail += f"  rest beside a crowded hash {own:6.2f}"
        client_ms = 1000 * r["client_cpu_s"] / r["requests"]
        lines.append(
            f"  {r['system']:12} {r['operation']:24} "
            f"server {r['server_cpu_ms_per_req']:6.2f}  db {r['db_cpu_ms_per_req']:5.2f}"
            f"  client {client_ms:5.2f}{detail}"
        )
    return lines


def pooler_lines(pooler: dict[str, Any]) -> list[str]:
    """Signup, login, refresh and /me through PgBouncer, each after its direct twin."""
    lines = [
        "behind a pooler (a second authsvc -w 2 on the same database through PgBouncer, "
        "pool_mode=transaction, AUTHSVC_DB_POOLER=transaction; each pooled row right after "
        "its direct twin):"
    ]
    if "skipped" in pooler:
        return [*lines, f"  not run: {pooler['skipped']}"]
    if "error" in pooler:
        return [*lines, f"  failed: {pooler['error']}"]
    lines.append(f"  {pooler.get('pgbouncer', '')}")
    header = (
        f"  {'path':10} {'operation':26} {'c':>3} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} "
        f"{'p99 ms':>8} {'errors':>6} {'server':>7} {'db':>5} {'pooler':>6} {'xact/r':>6} "
        f"{'stmt/r':>6} {'vs direct':>9}"
    )
    lines.append(header)
    lines.append("  " + "-" * (len(header) - 2))
    for r in pooler["rows"]:
        pooled = r["where"] != "direct"
        lines.append(
            f"  {r['where']:10} {r['endpoint']:26} {r['concurrency']:>3} {r['rps']:8.1f} "
            f"{r['p50_ms']:8.2f} {r['p95_ms']:8.2f} {r['p99_ms']:8.2f} {r['errors']:>6} "
            f"{r['server_cpu_ms_per_req']:7.2f} {r['db_cpu_ms_per_req']:5.2f} "
            f"{_fmt(r['pooler_cpu_ms_per_req'], '.2f') if pooled else '-':>6} "
            f"{_fmt(r.get('xacts_per_req'), '.2f') if pooled else '-':>6} "
            f"{_fmt(r.get('statements_per_req'), '.2f') if pooled else '-':>6} "
            f"{_pct(r.get('vs_direct')) if pooled else '':>9}"
        )
    lines.append(
        "  server/db/pooler = CPU ms per request; xact/r and stmt/r = transactions and "
        "statements PgBouncer passed on per request (SHOW STATS); vs direct = req/s over the "
        "direct row just before it."
    )
    return lines


def scale_lines(scale: dict[str, Any]) -> list[str]:
    """The scale section of the table."""
    lines = [f"scale (seeded with COPY; signup and login at c={scale['concurrency']}):"]
    if "error" in scale:
        return [*lines, f"  failed: {scale['error']}"]
    small, large = scale["small_users"], scale["users"]
    for op in ("signup", "login"):
        a = (scale.get("at_small") or {}).get(op)
        b = (scale.get("at_large") or {}).get(op)
        if a and b:
            lines.append(
                f"  {op:7} p50 {a['p50_ms']:7.1f} ms at {small:>9,} accounts, "
                f"{b['p50_ms']:7.1f} ms at {large:>9,} (p99 {a['p99_ms']:.1f} -> "
                f"{b['p99_ms']:.1f} ms; errors {a['errors']}, {b['errors']})"
            )
            if "server_cpu_ms_per_req" in a and "server_cpu_ms_per_req" in b:
                lines.append(
                    f"  {'':7} CPU per request (server + db): "
                    f"{a['server_cpu_ms_per_req']:.2f} + {a['db_cpu_ms_per_req']:.2f} ms at "
                    f"{small:,}, {b['server_cpu_ms_per_req']:.2f} + "
                    f"{b['db_cpu_ms_per_req']:.2f} ms at {large:,}"
                )
    lines.append(
        f"  seeding: {small:,} accounts {scale.get('seed_small_s', '-')} s, "
        f"up to {large:,} {scale.get('seed_large_s', '-')} s, split "
        f"{scale.get('seed_split_s', '-')} s"
    )
    for key, label in (("reconcile_one", "one database"), ("reconcile_split", "split")):
        r = scale.get(key)
        if not r:
            continue
        if "error" in r and "elapsed_ms" not in r:
            lines.append(f"  reconcile ({label}): could not run: {r['error']}")
            continue
        lines.append(
            f"  reconcile --json over {large:,} identities ({label}): {r['wall_s']:.2f} s wall, "
            f"{(r.get('elapsed_ms') or 0) / 1000:.2f} s reported; drift found {r.get('found')} "
            f"(planted {r.get('expected')}){'' if r.get('counts_match') else '  MISMATCH'}"
        )
    purge = scale.get("purge") or {}
    if not purge.get("available"):
        lines.append("  purge: not available (this checkout has no `authsvc purge`)")
    else:
        b, a = purge["before"], purge["after"]
        lines.append(
            f"  purge over {b['spent']:,} spent refresh tokens: {purge['wall_s']:.2f} s "
            f"(exit {purge['exit']}); spent {b['spent']:,} -> {a['spent']:,}, live "
            f"{b['live']:,} -> {a['live']:,}, sessions {b['sessions']:,} -> {a['sessions']:,}"
        )
    return lines


def write_json(data: dict[str, Any], path: Path) -> None:
    """The whole run as JSON."""
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")


def write_png(data: dict[str, Any], path: Path) -> None:
    """Two panels: each row's ratio to its ceiling, and raw throughput, authsvc beside the peer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [
        r
        for r in data["table"]["rows"]
        if r["operation"] in ("signup", "login", "refresh", "me", "healthz")
    ]
    keys = sorted(
        {(r["operation"], r["concurrency"]) for r in rows},
        key=lambda k: (["healthz", "signup", "login", "refresh", "me"].index(k[0]), k[1]),
    )
    names = {"healthz": "healthz\n/ ok", "me": "me /\nget-session"}
    labels = [f"{names.get(op, op)}\nc={c}" for op, c in keys]
    systems = [s for s in ("authsvc", "better-auth") if any(r["system"] == s for r in rows)]
    colors = {"authsvc": "#1f77b4", "better-auth": "#ff7f0e"}
    width = 0.8 / len(systems)
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(max(10, len(keys) * 0.9), 9))
    for i, system in enumerate(systems):
        by = {(r["operation"], r["concurrency"]): r for r in rows if r["system"] == system}
        xs = [k + (i - (len(systems) - 1) / 2) * width for k in range(len(keys))]
        ratios = [
            100 * (by[k]["ratio"] or 0) if k in by and by[k].get("ratio") else 0 for k in keys
        ]
        rps = [by[k]["rps"] if k in by else 0 for k in keys]
        cpu = [
            100 * by[k]["cpu_ratio"] if k in by and by[k].get("cpu_ratio") else None for k in keys
        ]
        ax1.bar(xs, ratios, width, label=f"{system} (throughput)", color=colors[system])
        marked = [(x, c) for x, c in zip(xs, cpu, strict=True) if c is not None]
        if marked:
            ax1.scatter(
                [x for x, _ in marked],
                [c for _, c in marked],
                marker="D",
                s=22,
                color="black",
                zorder=3,
                label="CPU-time reading" if i == 0 else None,
            )
        ax2.bar(xs, rps, width, label=system, color=colors[system])
    ax1.axhline(90, color="green", linestyle="--", linewidth=1)
    ax1.text(len(keys) - 0.5, 91, "signup/login target 90%", ha="right", fontsize=8, color="green")
    ax1.axhline(50, color="purple", linestyle=":", linewidth=1)
    ax1.text(
        len(keys) - 0.5, 51, "/me target 50% of /healthz", ha="right", fontsize=8, color="purple"
    )
    ax1.set_ylabel("% of own ceiling")
    ax1.set_ylim(0, max(110, ax1.get_ylim()[1]))
    ax1.set_title(
        "Share of each system's own ceiling (hash rate, or its light endpoint): "
        "bars by throughput, diamonds by CPU time"
    )
    ax2.set_ylabel("requests/s (log)")
    ax2.set_yscale("log")
    ax2.set_title("Raw throughput (hash costs differ: compare signup/login by the panel above)")
    for ax in (ax1, ax2):
        ax.set_xticks(range(len(keys)))
        ax.set_xticklabels(labels, fontsize=7)
        ax.legend()
    meta = data["meta"]
    fig.suptitle(
        f"authsvc bench {meta['started']} ({meta['commit']}, {meta['cores']} cores)"
        + (f"\n{meta['label']}" if meta.get("label") else ""),
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
