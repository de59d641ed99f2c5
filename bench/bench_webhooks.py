"""Webhook delivery: how long after a job ends its job.finished reaches a receiver on
loopback, and how many deliveries one worker process sends a second.

Latency: jobs (an import/base64 PNG converted to GIF) run one at a time; each delivery's
arrival (wall clock) minus the job's ended_at in Postgres (the start of the transaction that
ended it, so the commit is inside the figure).
Throughput: the outbox is filled with ``--deliveries`` rows (a real job's document as body)
while no worker runs, then one worker process starts; first to last arrival.

    .venv/bin/python -m bench.bench_webhooks [--jobs 100] [--deliveries 2000] [--senders 4]
"""

from __future__ import annotations

import argparse
import base64
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg
import pyvips

from appliance.supervisor import stop_process_groups
from bench.harness import Running, appliance
from tests.harness.receiver import Receiver

SCOPES = "{task.read,task.write,webhook.read,webhook.write}"
SEED = (
    "INSERT INTO webhook_deliveries (webhook_id, user_id, job_id, event, url, body)"
    " SELECT w.id, w.user_id, gen_random_uuid(), 'job.created', w.url,"
    " json_build_object('event', 'job.created', 'job', d.doc)::text"
    " FROM webhooks w, job_docs d, generate_series(1, %s) WHERE d.id = %s"
)


def png_b64() -> str:
    img = pyvips.Image.xyz(64, 48).extract_band(0).cast("uchar")
    return base64.b64encode(img.write_to_buffer(".png")).decode()


def connect(app: Running) -> httpx.Client:
    with psycopg.connect(app.env["APPLIANCE_DATABASE_URL"], autocommit=True) as conn:
        conn.execute("UPDATE api_keys SET scopes = %s", (SCOPES,))
    return httpx.Client(
        base_url=app.url, headers={"Authorization": f"Bearer {app.key}"}, timeout=60
    )


def latency(jobs: int, senders: int) -> list[float]:
    """Milliseconds from each job's end to its job.finished's arrival."""
    env = {"APPLIANCE_ALLOW_PRIVATE_URLS": "true", "APPLIANCE_WEBHOOK_SENDERS": str(senders)}
    receiver = Receiver().start()
    out = []
    try:
        with appliance(env_extra=env) as app, connect(app) as api:
            hook = {"url": receiver.url, "events": ["job.finished"]}
            api.post("/v2/webhooks", json=hook).raise_for_status()
            tasks = {
                "b": {"operation": "import/base64", "filename": "p.png", "file": png_b64()},
                "c": {"operation": "convert", "input": "b", "output_format": "gif"},
            }
            db = psycopg.connect(app.env["APPLIANCE_DATABASE_URL"], autocommit=True)
            for n in range(jobs):
                job = api.post("/v2/jobs", json={"tasks": tasks}).json()["data"]
                got = receiver.wait_for(n + 1, timeout=60)[n]
                row = db.execute(
                    "SELECT extract(epoch FROM ended_at) FROM jobs WHERE id = %s", (job["id"],)
                ).fetchone()
                assert row is not None and got.payload["job"]["id"] == job["id"]
                out.append((got.at - float(row[0])) * 1000)
            db.close()
    finally:
        receiver.stop()
    return out[1:]  # the first pays for the worker's first conversion set-up


def throughput(deliveries: int, senders: int) -> tuple[float, int]:
    """(deliveries a second from one worker process, body bytes)."""
    env = {"APPLIANCE_ALLOW_PRIVATE_URLS": "true", "APPLIANCE_WEBHOOK_SENDERS": str(senders)}
    receiver = Receiver().start()
    try:
        with appliance(start_workers=False, env_extra=env) as app, connect(app) as api:
            api.post("/v2/webhooks", json={"url": receiver.url, "events": ["job.finished"]})
            job = api.post(
                "/v2/jobs",
                json={
                    "tasks": {
                        "up": {"operation": "import/upload"},
                        "c": {"operation": "convert", "input": "up", "output_format": "webp"},
                        "e": {"operation": "export/url", "input": "c"},
                    }
                },
            ).json()["data"]
            with psycopg.connect(app.env["APPLIANCE_DATABASE_URL"], autocommit=True) as conn:
                conn.execute(SEED, (deliveries, job["id"]))
            worker = worker_process(app)
            try:
                got = receiver.wait_for(deliveries, timeout=600)
            finally:
                stop_process_groups([worker], 20)
    finally:
        receiver.stop()
    span = got[-1].at - got[0].at
    return (deliveries - 1) / span, len(got[0].body)


def worker_process(app: Running) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "appliance.cli", "worker", "-Q", "light", "-p", "1"]
    log = open(Path(app.data_dir).parent / "bench-worker.log", "wb")  # noqa: SIM115
    return subprocess.Popen(
        cmd, env=app.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=100)
    ap.add_argument("--deliveries", type=int, default=2000)
    ap.add_argument("--senders", type=int, default=4, help="APPLIANCE_WEBHOOK_SENDERS")
    args = ap.parse_args()
    started = time.monotonic()
    ms = sorted(latency(args.jobs, args.senders))
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    print(
        f"latency job end -> receiver, {len(ms)} jobs one at a time: median"
        f" {statistics.median(ms):.1f} ms, p99 {p99:.1f} ms, max {ms[-1]:.1f} ms"
    )
    rate, size = throughput(args.deliveries, args.senders)
    print(
        f"throughput, one worker process, {args.senders} senders, {args.deliveries}"
        f" deliveries of {size} bytes: {rate:.0f} deliveries/s"
    )
    print(f"({time.monotonic() - started:.0f} s in all)")


if __name__ == "__main__":
    main()
