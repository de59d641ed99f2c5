"""A soak run: the bundled load test held for a long time against a single host on this machine,
with what could grow sampled all along, to see that nothing grows without bound.

The appliance is the one ``bench_loadtest`` starts (API, a worker group, private Postgres and
Redis, local storage), with jobs kept ``--retention-minutes`` instead of a day, so that the
retention and clean-up that bound a real fleet's tables and storage are at work within the run
(Idempotency-Keys are kept as long).
Every job's file is unlike any other (``--unique-files``): nothing is shared by deduplication or
the conversion cache, as with real clients.

Every ``--sample`` seconds: RSS, open files and process count of the API, the worker (with its
sandboxed helpers), Postgres and Redis; every table's size (table + indexes) and the rows of
jobs and tasks; Redis's memory and keys; the files and bytes under the storage directory.
Written to ``<out>/samples.csv``; at the end each series is judged on the run's second half
(after the warm-up and the first retention period): its growth as a share of its level, per
hour, from a least-squares line. The load test's own report (p95, errors, plots) is in ``<out>``.

    .venv/bin/python -m bench.bench_soak [--users 420] [--minutes 30] [--retention-minutes 3]
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import redis

from bench.bench_loadtest import components
from bench.harness import appliance, rss_kib
from bench.loadtest import report

REPO = Path(__file__).resolve().parents[1]
# Tables whose rows are kept longer than a run by design: usage by day, the audit log by
# ``audit_retention_days``; their growth is reported but not held against the run.
KEPT_BY_DESIGN = ("table:usage_daily", "table:user_usage", "table:audit_log")
# Growth per hour, as a share of the series' level over the second half, above which a series
# is called growing; and an absolute floor under which changes are noise (a few files, pages).
GROWING_PER_HOUR = 0.05
NOISE = {"fds": 20, "procs": 2, "rss_kib": 16_384, "bytes": 1 << 20, "rows": 200, "keys": 200}


def open_files(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            total += len(os.listdir(f"/proc/{pid}/fd"))
        except (FileNotFoundError, PermissionError):
            continue
    return total


def live(pids: list[int]) -> list[int]:
    return [pid for pid in pids if Path(f"/proc/{pid}").exists()]


def tree_size(root: Path) -> tuple[int, int]:
    files = size = 0
    for dirpath, _, names in os.walk(root):
        for name in names:
            try:
                size += os.lstat(os.path.join(dirpath, name)).st_size
            except FileNotFoundError:
                continue
            files += 1
    return files, size


def sample(app_roots: list[int], db_url: str, redis_url: str, data_dir: Path) -> dict[str, float]:
    row: dict[str, float] = {}
    for name, pids in components(app_roots).items():
        pids = live(pids)
        row[f"{name}:rss_kib"] = rss_kib(pids)
        row[f"{name}:fds"] = open_files(pids)
        row[f"{name}:procs"] = len(pids)
    with psycopg.connect(db_url, autocommit=True) as conn:
        for table, size in conn.execute(
            "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY 1"
        ):
            row[f"table:{table}:bytes"] = size
        for table in ("jobs", "tasks"):
            (count,) = conn.execute(f"SELECT count(*) FROM {table}").fetchone() or (0,)
            row[f"table:{table}:rows"] = count
    client = redis.Redis.from_url(redis_url)
    try:
        row["redis:used_memory:bytes"] = client.info("memory")["used_memory"]
        row["redis:db:keys"] = client.dbsize()
    finally:
        client.close()
    files, size = tree_size(data_dir)
    row["storage:files:rows"], row["storage:all:bytes"] = files, size
    return row


def judge(samples: list[dict[str, float]]) -> list[str]:
    """A line per series: its level at the start of the second half, at the end, the
    second half's growth per hour; GROWS where that is beyond both thresholds."""
    half = samples[len(samples) // 2 :]
    ts = [s["t"] for s in half]
    lines = []
    for name in sorted(k for k in samples[-1] if k != "t"):
        ys = [s.get(name, 0.0) for s in half]
        level = max(sum(ys) / len(ys), 1.0)
        per_hour = statistics.linear_regression(ts, ys).slope * 3600 if len(ts) > 1 else 0.0
        unit = name.rsplit(":", 1)[1]
        grows = per_hour / level > GROWING_PER_HOUR and per_hour > NOISE.get(unit, 0)
        verdict = "GROWS" if grows else "bounded"
        if grows and name.rsplit(":", 1)[0] in KEPT_BY_DESIGN:
            verdict = "grows (kept by design)"
        lines.append(
            f"{name:44} {ys[0]:>14,.0f} -> {ys[-1]:>14,.0f}  {per_hour / level:+7.1%}/h  {verdict}"
        )
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=420, help="70%% of the 600 one host held")
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--retention-minutes", type=float, default=3)
    ap.add_argument("--sample", type=float, default=30, help="seconds between samples")
    ap.add_argument("--api-workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=REPO / "bench/out/soak")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    metrics_port = "19180"
    env = {
        "APPLIANCE_API_METRICS_PORT": metrics_port,
        "APPLIANCE_SYNC_TIMEOUT_SECONDS": "60",
        "APPLIANCE_JOB_RETENTION_HOURS": str(args.retention_minutes / 60),
        "APPLIANCE_IDEMPOTENCY_KEY_HOURS": str(args.retention_minutes / 60),
    }
    samples: list[dict[str, float]] = []
    with appliance(api_workers=args.api_workers, env_extra=env) as app:
        db_url, redis_url = app.env["APPLIANCE_DATABASE_URL"], app.env["APPLIANCE_REDIS_URL"]
        load = subprocess.Popen(
            [sys.executable, "-m", "bench.loadtest", "--url", app.url, "--make-keys",
             str(min(args.users, 100)), "--users", str(args.users), "--spawn-rate", "20",
             "--run-time", f"{int(args.minutes * 60)}s", "--unique-files", "--metrics-url",
             f"http://127.0.0.1:{metrics_port}/metrics", "--out", str(args.out)],
            env={**os.environ, **app.env}, cwd=REPO,
        )  # fmt: skip
        started = time.monotonic()
        deadline = started + args.minutes * 60 + 300  # Locust's own stop, with room to spare
        with (args.out / "samples.csv").open("w", newline="") as f:
            writer: csv.DictWriter[str] | None = None
            while load.poll() is None and time.monotonic() < deadline:
                row = {"t": round(time.monotonic() - started, 1)}
                row.update(sample(app.root_pids, db_url, redis_url, app.data_dir))
                samples.append(row)
                if writer is None:
                    writer = csv.DictWriter(f, fieldnames=list(row), extrasaction="ignore")
                    writer.writeheader()
                writer.writerow(row)
                f.flush()
                time.sleep(args.sample)
        if load.poll() is None:
            load.kill()
            raise SystemExit("the load test did not stop in time")
    if load.returncode != 0:
        raise SystemExit(f"the load test failed ({load.returncode})")
    print(report.summary(args.out / "locust").line())
    print(f"{len(samples)} samples over {samples[-1]['t'] / 60:.0f} min; second half:")
    print("\n".join(judge(samples)))


if __name__ == "__main__":
    main()
