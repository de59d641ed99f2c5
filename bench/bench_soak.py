"""A soak run: the bundled load test held for a long time against a single host on this machine,
with what could grow sampled all along, to see that nothing grows without bound.

The appliance is the one ``bench_loadtest`` starts (API, a worker group, private Postgres and
Redis, local storage), with jobs kept ``--retention-minutes`` instead of a day, so that the
retention and clean-up that bound a real fleet's tables and storage are at work within the run
(Idempotency-Keys are kept as long).
Every job's file is unlike any other (``--unique-files``): nothing is shared by deduplication or
the conversion cache, as with real clients.

Every ``--sample`` seconds: memory (PSS: shared pages, such as Postgres's buffers, counted once
across processes), open files and process count of the API, the worker (with its sandboxed
helpers), Postgres and Redis; every table's size (table + indexes) and the rows of jobs and
tasks; Redis's memory and keys; the files and bytes under the storage directory. Written to
``<out>/samples.csv``. At the end each series is judged by its peak in the run's last third
against its peak in the middle third (after the warm-up and the first retention periods): a
series that still climbs past its earlier peak grows; one that rises and falls (helpers
replaced, caches at their cap, rows expiring) does not. The API's status cache is capped at
``--status-cache-mb`` per process (16 MB, so that it fills within the run; 64 MB by default).
The load test's own report (p95, errors, plots) is in ``<out>``.

    .venv/bin/python -m bench.bench_soak [--users 420] [--minutes 30] [--retention-minutes 3]
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import redis

from bench.bench_loadtest import components
from bench.harness import appliance
from bench.loadtest import report

REPO = Path(__file__).resolve().parents[1]
# Tables whose rows are kept longer than a run by design: usage by day, the audit log by
# ``audit_retention_days``; their growth is reported but not held against the run.
KEPT_BY_DESIGN = (
    "table:usage_counts",
    "table:user_usage",
    "table:audit_log",
    # a fleet's versioned buckets keep old versions storage_noncurrent_days (bench_fleet_soak)
    "s3-store:disk",
)
# How far past its middle-third peak a series must climb in the last third to be called
# growing, as a share and at least an absolute step (a few files, pages, a helper's start).
GROWING = 0.05
NOISE = {"fds": 20, "procs": 2, "pss_kib": 16_384, "bytes": 1 << 20, "rows": 200, "keys": 200}


def pss_kib(pids: list[int]) -> int:
    """Proportional set size: each shared page counted once among the processes sharing it."""
    total = 0
    for pid in pids:
        try:
            lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        total += sum(int(line.split()[1]) for line in lines if line.startswith("Pss:"))
    return total


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
        row[f"{name}:pss_kib"] = pss_kib(pids)
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
    """A line per series: its peaks in the middle and last thirds, the change between them,
    GROWS where the last third climbs past the middle one's peak beyond both thresholds."""
    third = len(samples) // 3
    middle, last = samples[third : 2 * third], samples[2 * third :]
    lines = []
    for name in sorted(k for k in samples[-1] if k != "t"):
        before = max(s.get(name, 0.0) for s in middle)
        after = max(s.get(name, 0.0) for s in last)
        unit = name.rsplit(":", 1)[1]
        grows = after > before * (1 + GROWING) and after - before > NOISE.get(unit, 0)
        verdict = "GROWS" if grows else "bounded"
        if grows and name.rsplit(":", 1)[0] in KEPT_BY_DESIGN:
            verdict = "grows (kept by design)"
        change = (after - before) / before if before else 0.0
        lines.append(f"{name:44} {before:>14,.0f} -> {after:>14,.0f}  {change:+7.1%}  {verdict}")
    return lines


def hold(
    load: subprocess.Popen[bytes],
    minutes: float,
    every: float,
    out: Path,
    take: Callable[[], dict[str, float]],
) -> list[dict[str, float]]:
    """While the load test runs (``minutes``, with 5 minutes' room for Locust's own stop):
    a sample from ``take`` every ``every`` seconds, each with its time ``t`` since the start,
    appended to ``out/samples.csv`` as it is taken. The load test is killed and the run
    refused if it has not stopped by then."""
    samples: list[dict[str, float]] = []
    started = time.monotonic()
    deadline = started + minutes * 60 + 300
    with (out / "samples.csv").open("w", newline="") as f:
        writer: csv.DictWriter[str] | None = None
        while load.poll() is None and time.monotonic() < deadline:
            row = {"t": round(time.monotonic() - started, 1), **take()}
            samples.append(row)
            if writer is None:
                writer = csv.DictWriter(f, fieldnames=list(row), extrasaction="ignore")
                writer.writeheader()
            writer.writerow(row)
            f.flush()
            time.sleep(every)
    if load.poll() is None:
        load.kill()
        raise SystemExit("the load test did not stop in time")
    return samples


def verdict(load: subprocess.Popen[bytes], out: Path, samples: list[dict[str, float]]) -> None:
    """The load test's summary line and each series' judgement (``judge``)."""
    if load.returncode != 0:
        raise SystemExit(f"the load test failed ({load.returncode})")
    print(report.summary(out / "locust").line())
    print(
        f"{len(samples)} samples over {samples[-1]['t'] / 60:.0f} min; peaks, middle third -> last:"
    )
    print("\n".join(judge(samples)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=420, help="70%% of the 600 one host held")
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--retention-minutes", type=float, default=3)
    ap.add_argument("--sample", type=float, default=30, help="seconds between samples")
    ap.add_argument("--api-workers", type=int, default=2)
    ap.add_argument("--status-cache-mb", type=int, default=16)
    ap.add_argument("--out", type=Path, default=REPO / "bench/out/soak")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    metrics_port = "19180"
    env = {
        "APPLIANCE_API_METRICS_PORT": metrics_port,
        "APPLIANCE_SYNC_TIMEOUT_SECONDS": "60",
        "APPLIANCE_JOB_RETENTION_HOURS": str(args.retention_minutes / 60),
        "APPLIANCE_IDEMPOTENCY_KEY_HOURS": str(args.retention_minutes / 60),
        "APPLIANCE_STATUS_CACHE_BYTES": str(args.status_cache_mb << 20),
    }
    with appliance(api_workers=args.api_workers, env_extra=env) as app:
        db_url, redis_url = app.env["APPLIANCE_DATABASE_URL"], app.env["APPLIANCE_REDIS_URL"]
        load = subprocess.Popen(
            [sys.executable, "-m", "bench.loadtest", "--url", app.url, "--make-keys",
             str(min(args.users, 100)), "--users", str(args.users), "--spawn-rate", "20",
             "--run-time", f"{int(args.minutes * 60)}s", "--unique-files", "--metrics-url",
             f"http://127.0.0.1:{metrics_port}/metrics", "--out", str(args.out)],
            env={**os.environ, **app.env}, cwd=REPO,
        )  # fmt: skip
        samples = hold(
            load, args.minutes, args.sample, args.out,
            lambda: sample(app.root_pids, db_url, redis_url, app.data_dir),
        )  # fmt: skip
    verdict(load, args.out, samples)


if __name__ == "__main__":
    main()
