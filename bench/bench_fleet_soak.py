"""A soak run in the lab fleet: the bundled load test held for a long time through the lab
fleet's lb (``bench_fleet_load``'s six hosts, provisioned from bare with the one command), with
what could grow sampled on every host all along, to see that nothing grows without bound.

The fleet keeps jobs (and Idempotency-Keys) ``--retention-minutes`` instead of a day (the
fleet settings ``job_retention_hours`` and ``idempotency_key_hours``), so that the retention
and clean-up that bound a fleet's tables and storage are at work within the run; every job's
file is unlike any other (``--unique-files``).

Every ``--sample`` seconds: memory (PSS), open files and process count of each systemd unit
of each host (``host/unit``, as ``bench_fleet_load`` accounts CPU); every table's size on the
db primary and the rows of jobs and tasks; Redis's memory and keys on its host; the app
bucket's objects and bytes, and the S3 server's disk (the fleet's buckets are versioned, so it
keeps every deleted file's old version: the deploy asks for them to be deleted after
``storage_noncurrent_days``, which the lab's Swift cannot do). Written to
``<out>/samples.csv`` and judged as ``bench_soak`` judges a single host's (peak of the last
third against the middle third's). The CPU each unit used over the run is printed too
(``bench_fleet_load.report``). The load test's own report (p95, errors, plots) is in
``<out>``.

    .venv/bin/python -m bench.bench_fleet_soak [--users 210] [--minutes 30]

Loopback and the lab's own hosts only; bounded by ``--minutes``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from minio import Minio

from bench.bench_fleet_load import lab_fleet, report, unit_cpu, unit_pids
from bench.bench_soak import hold, live, open_files, pss_kib, tree_size, verdict
from tests.deploy.fleet import LAYOUT, Fleet
from tests.harness.s3server import S3Server

REPO = Path(__file__).resolve().parents[1]
TABLES = (
    "SELECT 'table:' || c.relname || ':bytes', pg_total_relation_size(c.oid) FROM pg_class c"
    " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'"
    " AND c.relkind = 'r' UNION ALL SELECT 'table:jobs:rows', count(*) FROM jobs"
    " UNION ALL SELECT 'table:tasks:rows', count(*) FROM tasks"
)


def stored(s3: S3Server, bucket: str) -> tuple[int, int]:
    """The bucket's current objects and their bytes (old versions are not listed)."""
    client = Minio(s3.endpoint, s3.access_key, s3.secret_key, secure=False, region=s3.region)
    files = size = 0
    for item in client.list_objects(bucket, recursive=True):
        files, size = files + 1, size + (item.size or 0)
    return files, size


def sample(fleet: Fleet, redis_password: str, s3: S3Server, bucket: str) -> dict[str, float]:
    row: dict[str, float] = {}
    for unit, pids in unit_pids(fleet).items():
        pids = live(pids)
        row[f"{unit}:pss_kib"] = pss_kib(pids)
        row[f"{unit}:fds"] = open_files(pids)
        row[f"{unit}:procs"] = len(pids)
    primary = fleet.db_primary()
    tables = fleet.lab.run(
        primary, f'cd / && runuser -u postgres -- psql -XAt -F " " -d appliance -c "{TABLES}"'
    ).stdout
    for line in tables.splitlines():
        name, value = line.split()
        row[name] = float(value)
    redis_host = next(n for n, roles in LAYOUT.items() if "redis" in roles)
    cli = (
        f"REDISCLI_AUTH='{redis_password}' timeout 10 redis-cli --no-auth-warning"
        f" -h {fleet.lab.ip(redis_host)} --user admin"
    )
    info = fleet.lab.run(redis_host, f"{cli} INFO memory && {cli} DBSIZE").stdout
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    row["redis:used_memory:bytes"] = float(fields["used_memory"])
    row["redis:db:keys"] = float(info.split()[-1])
    row["storage:files:rows"], row["storage:all:bytes"] = stored(s3, bucket)
    # the store's disk: the backups' bucket and every old version too (see KEPT_BY_DESIGN)
    row["s3-store:disk:bytes"] = tree_size(s3.workdir / "srv")[1]
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--users", type=int, default=210, help="70%% of the 300 the fleet held with p95 < 2 s"
    )
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--retention-minutes", type=float, default=3)
    ap.add_argument("--sample", type=float, default=30, help="seconds between samples")
    ap.add_argument("--keys", type=int, default=20, help="users' keys made on the fleet")
    ap.add_argument("--out", type=Path, default=REPO / "bench/out/soak-fleet")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    hours = args.retention_minutes / 60
    settings = {"job_retention_hours": hours, "idempotency_key_hours": hours}
    with lab_fleet(args.keys, settings) as lab:
        fleet = lab.fleet
        secrets = Path(fleet.env["APPLIANCE_DEPLOY_SECRETS_DIR"]) / "lab.json"
        redis_password = json.loads(secrets.read_text())["redis_admin_password"]
        bucket = json.loads((lab.work / "fleet.json").read_text())["data"]["s3_external"]["bucket"]
        cpu_before = unit_cpu(fleet)
        load = subprocess.Popen(
            [sys.executable, "-m", "bench.loadtest", "--url", fleet.url, "--keys",
             str(lab.keys), "--users", str(args.users), "--spawn-rate", "20", "--run-time",
             f"{int(args.minutes * 60)}s", "--insecure", "--mix", "image,table",
             "--unique-files", "--out", str(args.out)],
            cwd=REPO,
        )  # fmt: skip
        started = time.monotonic()
        samples = hold(
            load, args.minutes, args.sample, args.out,
            lambda: sample(fleet, redis_password, lab.s3, bucket),
        )  # fmt: skip
        after = unit_cpu(fleet)
        wall = time.monotonic() - started
        report(args.users, wall, {u: after[u] - cpu_before.get(u, 0.0) for u in after})
    verdict(load, args.out, samples)


if __name__ == "__main__":
    main()
