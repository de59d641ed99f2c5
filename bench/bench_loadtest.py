"""The bundled load test against a single host on this machine: the appliance (API with
``--api-workers`` processes, a light-queue worker group) on private Postgres and Redis,
driven by ``bench.loadtest`` with ``--users`` clients; prints Locust's summary and the CPU
each component used during the run (from /proc), to see what saturates first.

    .venv/bin/python -m bench.bench_loadtest [--users 200] [--run-time 60s] [--api-workers 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.harness import appliance, cpu_seconds, descendants

REPO = Path(__file__).resolve().parents[1]


def components(pids: list[int]) -> dict[str, list[int]]:
    """api, worker, postgres, redis: each root process with everything under it."""
    names = ("api", "worker", "postgres", "redis")
    return {name: [pid, *descendants(pid)] for name, pid in zip(names, pids, strict=True)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--spawn-rate", type=float, default=50)
    ap.add_argument("--run-time", default="60s")
    ap.add_argument("--api-workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=REPO / "bench/out/loadtest-single-host")
    args = ap.parse_args()
    metrics_port = "19179"
    env = {"APPLIANCE_API_METRICS_PORT": metrics_port, "APPLIANCE_SYNC_TIMEOUT_SECONDS": "60"}
    with appliance(api_workers=args.api_workers, env_extra=env) as app:
        parts = components(app.root_pids)
        before = {name: cpu_seconds(pids) for name, pids in parts.items()}
        started = time.monotonic()
        subprocess.run(
            [sys.executable, "-m", "bench.loadtest", "--url", app.url, "--make-keys",
             str(min(args.users, 100)), "--users", str(args.users), "--spawn-rate",
             str(args.spawn_rate), "--run-time", args.run_time, "--metrics-url",
             f"http://127.0.0.1:{metrics_port}/metrics", "--out", str(args.out)],
            env={**os.environ, **app.env}, cwd=REPO, check=True,
        )  # fmt: skip
        wall = time.monotonic() - started
        parts = components(app.root_pids)  # workers fork and restart: look again
        used = {name: cpu_seconds(pids) - before[name] for name, pids in parts.items()}
    cores = os.cpu_count() or 1
    print(f"CPU over {wall:.0f} s on {cores} cores (core-seconds, share of the machine):")
    for name, seconds in sorted(used.items(), key=lambda kv: -kv[1]):
        print(f"  {name:9} {seconds:7.1f}  {seconds / (wall * cores):6.1%}")


if __name__ == "__main__":
    main()
