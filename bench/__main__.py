"""`python -m bench`: start everything on fresh databases, measure, stop it all, print the table.

    python -m bench                  the full run (about 20 minutes on 2 cores)
    python -m bench --quick          the smoke-test size (well under a minute)
    python -m bench --peer off       without Better Auth
    python -m bench --only pooler    only signup, login and /me through PgBouncer beside direct
    python -m bench --users 100000   a smaller scale section

Writes bench/results/bench-<time>.{txt,json,png} (or under --results). Exit status 0 when the
bench ran (targets missed or not), 1 when something could not be started or measured.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import report
from bench.cpu import postmaster_pid
from bench.load import wrk_path
from bench.pooled import pooler_available, run_pooled
from bench.scale import run_scale
from bench.servers import (
    REPO,
    Authsvc,
    Peer,
    PeerUnavailable,
    Postgres,
    install_peer,
    migrate,
    service_env,
)
from bench.table import Config, repo_sha, run_table


def parse_args(argv: list[str] | None) -> tuple[Config, argparse.Namespace]:
    """The run's sizes from the command line (`--quick` first, then explicit options)."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes and 1 s rows (the smoke test)"
    )
    parser.add_argument("--seconds", type=float, help="length of each light row (default 10)")
    parser.add_argument(
        "--hash-seconds", type=float, help="length of each signup and login row (default 20)"
    )
    parser.add_argument("--repeats", type=int, help="runs of the c=32 spread (default 5)")
    parser.add_argument("--users", type=int, help="accounts for the scale section (default 1M)")
    parser.add_argument("--spent-tokens", type=int, help="spent refresh tokens for the purge")
    parser.add_argument(
        "--peer",
        choices=("auto", "on", "off"),
        default="auto",
        help="Better Auth beside authsvc (auto: when node and npm exist)",
    )
    parser.add_argument(
        "--only",
        choices=("table", "pooler", "scale"),
        help="run one section (default: all; pooler needs the table's service and runs its "
        "direct twins itself)",
    )
    parser.add_argument(
        "--pooler",
        choices=("auto", "on", "off"),
        default="auto",
        help="signup, login and /me through PgBouncer beside direct (auto: when installed)",
    )
    parser.add_argument("--results", type=Path, default=REPO / "bench" / "results")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="after the table, sample authsvc's workers with py-spy",
    )
    parser.add_argument("--label", default="", help="a note printed on the table and chart")
    args = parser.parse_args(argv)
    cfg = Config()
    if args.quick:
        cfg = Config(
            seconds=1,
            hash_seconds=2,
            concurrency=(4,),
            repeats=1,
            warmup=0,
            ceiling_seconds=0.5,
            ceiling_bookends=False,
            timing_pairs=1,
            users=2_000,
            small_users=200,
            spent_tokens=2_000,
            scale_seconds=1,
        )
    for name in ("seconds", "hash_seconds", "repeats", "users", "spent_tokens"):
        value = getattr(args, name)
        if value is not None:
            setattr(cfg, name, value)
    if args.users is not None:
        cfg.small_users = min(cfg.small_users, max(1, args.users // 10))
    if args.spent_tokens is None and args.users is not None:
        cfg.spent_tokens = min(cfg.spent_tokens, args.users * 4)
    cfg.peer = args.peer
    return cfg, args


def main(argv: list[str] | None = None) -> int:
    """Run the bench, print and write the table; the exit status."""
    cfg, args = parse_args(argv)
    wrk_path()  # fail before starting anything when the load client is missing
    args.results.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    base = args.results / f"bench-{stamp}"
    logs = args.results / f"bench-{stamp}-logs"
    logs.mkdir(exist_ok=True)

    def progress(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    data: dict[str, Any] = {
        "meta": {
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "commit": repo_sha(REPO),
            "cores": cfg.cores,
            "label": args.label,
            "loadavg_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
            "server": "python -m gunicorn -w 2 wsgi:app (gunicorn.conf.py), "
            "AUTHSVC_ENV=production, AUTHSVC_RATE_LIMITS=off; load client wrk (keep-alive, Lua)",
            "config": {k: v for k, v in vars(cfg).items()},
        }
    }
    pg = svc = peer = None
    status = 0
    try:
        progress("starting Postgres")
        pg = Postgres()
        if args.only != "scale":
            url = pg.create_database("bench_authsvc")
            env = service_env(url)
            migrate(env)
            svc = Authsvc(env, logs / "gunicorn.log")
            if cfg.peer != "off" and args.only != "pooler":
                try:
                    progress("installing and starting Better Auth")
                    install_peer(logs / "npm.log")
                    peer = Peer(pg.create_database("bench_betterauth"), logs / "peer.log")
                except (PeerUnavailable, RuntimeError) as exc:
                    if cfg.peer == "on":
                        raise
                    data["peer_status"] = f"not run: {exc}"
                    progress(data["peer_status"])
            if args.only != "pooler":
                data["table"] = run_table(
                    cfg, svc, url, peer, postmaster_pid(pg.data_dir), progress
                )
                data["table"]["repeat_summary"] = report.summarize_repeats(data["table"]["repeats"])
            if args.pooler != "off":
                missing = pooler_available()
                if missing and args.pooler == "on":
                    raise RuntimeError(missing)
                if missing:
                    data["pooler"] = {"skipped": missing}
                    progress(f"pooler rows not run: {missing}")
                else:
                    try:
                        data["pooler"] = run_pooled(
                            cfg,
                            svc,
                            url,
                            pg.admin_url,
                            postmaster_pid(pg.data_dir),
                            logs / "gunicorn-pooled.log",
                            progress,
                        )
                    except Exception as exc:  # noqa: BLE001 - the table above still stands
                        traceback.print_exc()
                        data["pooler"] = {"error": f"{type(exc).__name__}: {exc}"}
                        status = 1
            if args.profile:
                from bench.profile import run_profiles

                c = sorted(cfg.concurrency)[len(cfg.concurrency) // 2]
                try:
                    data["profile"] = run_profiles(
                        svc.base, svc.proc.pid, url, c, cfg.seconds, logs, progress
                    )
                except Exception as exc:  # noqa: BLE001 - the table stands without it
                    traceback.print_exc()
                    data["profile"] = {"error": f"{type(exc).__name__}: {exc}"}
            svc.stop()
            svc = None
            if peer:
                peer.stop()
                peer = None
        if args.only not in ("table", "pooler"):
            try:
                data["scale"] = run_scale(cfg, pg, logs / "gunicorn-scale.log", progress)
            except Exception as exc:  # noqa: BLE001 - the table above still stands
                traceback.print_exc()
                data["scale"] = {
                    "error": f"{type(exc).__name__}: {exc}",
                    "users": cfg.users,
                    "small_users": cfg.small_users,
                    "concurrency": cfg.scale_concurrency,
                }
                status = 1
    except Exception:  # noqa: BLE001 - report, stop everything, exit 1
        traceback.print_exc()
        status = 1
    finally:
        for thing in (svc, peer, pg):
            if thing is not None:
                try:
                    thing.stop()
                except Exception:  # noqa: BLE001 - keep stopping the rest
                    traceback.print_exc()
    if not {"table", "pooler", "scale"} & data.keys():
        return 1
    data["meta"]["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    data["targets"] = report.targets(data)
    table = report.text(data)
    print(table)
    base.with_suffix(".txt").write_text(table + "\n")
    report.write_json(data, base.with_suffix(".json"))
    written = [base.with_suffix(".txt"), base.with_suffix(".json")]
    if "table" in data:
        report.write_png(data, base.with_suffix(".png"))
        written.append(base.with_suffix(".png"))
    print(f"\nwritten: {', '.join(map(str, written))} (logs in {logs})")
    return status


if __name__ == "__main__":
    sys.exit(main())
