"""Thousands of jobs in flight at once on one appliance: all finish, none is lost or run
twice, and the API keeps answering while they drain.

1. An appliance (bench/harness.py) with its API only. ``--jobs`` jobs are created through the
   API by ``--clients`` threads, each job import/base64 of a small PNG (every one different,
   so the conversion cache never answers) -> convert to JPEG -> export/url. No worker runs
   yet, so every job is in flight at once when the last is created.
2. One worker group starts (one process per core, the appliance's default threads). While it
   drains the queue, ``--pollers`` threads read the status of random jobs
   (``GET /v2/jobs/{id}``) and, one read in ten, a page of the job list, ``--read-rate`` reads
   a second in all (5,000 clients polling every 25 s by default); the queue depth and
   the oldest message's age are read from the API's metrics port every 5 s.
3. When every job has ended: jobs by status and tasks run more than once (Postgres), engine
   runs (the worker's metrics port), the creation and status-read latencies, and how long
   the queue figures stayed past the alert rules' thresholds.

``--hold`` keeps the workers off that long after the last job is made (a worker fleet that is
down or far too small); with ``--alerts`` a Prometheus of the bench's own, with the
appliance's alert rules (``monitoring/prometheus/rules/appliance.yml``), scrapes the API
every 5 s, and the report says when each alert fired and when it cleared.

    .venv/bin/python -m bench.bench_inflight [--jobs 5000] [--clients 16] [--pollers 16]
        [--read-rate 200] [--hold SECONDS] [--alerts]
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from base64 import b64encode
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import psycopg
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from appliance import local_services
from appliance.supervisor import stop_process_groups
from bench.bench_convert import CORES, JsonApi
from bench.harness import Running, appliance

RULES = (
    Path(__file__).resolve().parents[1] / "monitoring" / "prometheus" / "rules" / "appliance.yml"
)
# The alert rules' thresholds (monitoring/prometheus/rules/appliance.yml)
BACKLOG_DEPTH = 100  # ApplianceQueueBacklog: depth > 100 for 10 min
STALLED_AGE = 300  # ApplianceQueueStalled: oldest > 300 s for 5 min


def png(i: int) -> bytes:
    """A 64x64 PNG of its own: pixel (i % 64, i // 64 % 64) and one colour channel differ."""
    img = Image.new("RGB", (64, 64), (i % 251, (i * 7) % 253, 128))
    img.putpixel((i % 64, i // 64 % 64), (255, 255, i // 4096 % 256))
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def job(i: int) -> dict:
    return {
        "tag": "inflight",
        "tasks": {
            "in": {
                "operation": "import/base64",
                "file": b64encode(png(i)).decode(),
                "filename": f"in{i}.png",
            },
            "c": {"operation": "convert", "input": "in", "output_format": "jpg"},
            "e": {"operation": "export/url", "input": "c"},
        },
    }


def timed(api: JsonApi, method: str, path: str, body: dict | None = None) -> tuple[float, dict]:
    start = time.perf_counter()
    answer = api.call(method, path, body)
    return time.perf_counter() - start, answer


def percentiles(seconds: list[float]) -> str:
    if not seconds:
        return "none"
    q = statistics.quantiles(seconds, n=100, method="inclusive")
    return (
        f"n {len(seconds)}, p50 {q[49] * 1000:.0f} ms, p95 {q[94] * 1000:.0f} ms,"
        f" p99 {q[98] * 1000:.0f} ms, max {max(seconds) * 1000:.0f} ms"
    )


def create(api: JsonApi, jobs: int, clients: int) -> tuple[list[str], list[float], float]:
    """Job ids, each creation's latency, and the seconds it all took."""
    start = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        made = list(pool.map(lambda i: timed(api, "POST", "/v2/jobs", job(i)), range(jobs)))
    return [m[1]["data"]["id"] for m in made], [m[0] for m in made], time.monotonic() - start


def gauges(url: str) -> dict[str, float]:
    text = httpx.get(url, timeout=10).text
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.labels.get("queue") == "light" and s.name in (
                "appliance_queue_depth",
                "appliance_queue_oldest_age_seconds",
            ):
                found[s.name] = s.value
            if s.name == "appliance_conversions_total" and s.labels.get("result") == "ok":
                found["conversions"] = found.get("conversions", 0) + s.value
    return found


def unended(db: str, ids: list[str]) -> int:
    with psycopg.connect(db) as conn:
        row = conn.execute(
            "SELECT count(*) FROM jobs WHERE id = ANY(%s::uuid[]) AND ended_at IS NULL", (ids,)
        ).fetchone()
    return int(row[0]) if row else -1


def outcome(db: str, ids: list[str]) -> dict[str, object]:
    with psycopg.connect(db) as conn:
        by_status: dict[str, int] = dict(
            conn.execute(
                "SELECT status, count(*) FROM jobs WHERE id = ANY(%s::uuid[]) GROUP BY 1",
                (ids,),
            ).fetchall()
        )
        tagged = conn.execute("SELECT count(*) FROM jobs WHERE tag = 'inflight'").fetchone()
        rerun = conn.execute(
            "SELECT count(*) FROM tasks WHERE job_id = ANY(%s::uuid[]) AND attempts > 1", (ids,)
        ).fetchone()
    return {
        "jobs_by_status": by_status,
        "jobs_in_db": tagged[0] if tagged else None,
        "tasks_run_more_than_once": rerun[0] if rerun else None,
    }


def drain(
    app: Running, ids: list[str], pollers: int, read_rate: float, api_port: int, worker_port: int
) -> dict[str, object]:
    """Start the workers and read while they work; figures of the drain."""
    api = JsonApi(app.url, app.key, timeout=60)
    db = app.env["APPLIANCE_DATABASE_URL"]
    reads: list[float] = []
    lists: list[float] = []
    failed: list[str] = []
    samples: list[tuple[float, float, float]] = []  # (t, depth, oldest age)
    done = threading.Event()

    every = pollers / read_rate  # seconds between one poller's reads

    def poll() -> None:
        rng = random.Random(threading.get_ident())
        due = time.monotonic()
        while not done.wait(max(0.0, due - time.monotonic())):
            due += every
            try:
                if rng.random() < 0.1:
                    lists.append(timed(api, "GET", "/v2/jobs?per_page=25&filter[tag]=inflight")[0])
                else:
                    reads.append(timed(api, "GET", f"/v2/jobs/{rng.choice(ids)}")[0])
            except Exception as exc:  # counted, not fatal: the figure is the error rate
                failed.append(repr(exc)[:200])

    api_metrics = f"http://127.0.0.1:{api_port}/metrics"
    worker_metrics = f"http://127.0.0.1:{worker_port}/metrics"
    env = {**app.env, "APPLIANCE_WORKER_METRICS_PORT": str(worker_port)}
    worker = subprocess.Popen(
        [sys.executable, "-m", "appliance.cli", "worker", "-Q", "light", "-p", str(CORES)],
        env=env,
        stdout=open(app.data_dir.parent / "worker.log", "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    start = time.monotonic()
    threads = [threading.Thread(target=poll, daemon=True) for _ in range(pollers)]
    for t in threads:
        t.start()
    try:
        left = len(ids)
        while left:
            assert time.monotonic() - start < 3600, f"{left} jobs unended after an hour"
            g = gauges(api_metrics)
            samples.append(
                (
                    time.monotonic() - start,
                    g.get("appliance_queue_depth", 0.0),
                    g.get("appliance_queue_oldest_age_seconds", 0.0),
                )
            )
            time.sleep(5)
            left = unended(db, ids)
        drained = time.monotonic() - start
        done.set()
        for t in threads:
            t.join()
        conversions = gauges(worker_metrics).get("conversions")
    finally:
        done.set()
        stop_process_groups([worker], 20)
    return {
        "drained_seconds": drained,
        "conversions_per_minute": len(ids) / drained * 60,
        "engine_runs_ok": conversions,
        "reads_per_second": (len(reads) + len(lists)) / drained,
        "status_reads": percentiles(reads),
        "list_reads": percentiles(lists),
        "read_errors": len(failed),
        "read_error_examples": failed[:3],
        "read_error_rate": len(failed) / max(1, len(reads) + len(lists) + len(failed)),
        "max_depth": max(s[1] for s in samples),
        "max_oldest_age_s": max(s[2] for s in samples),
        "seconds_depth_over_100": over(samples, 1, BACKLOG_DEPTH),
        "seconds_oldest_over_300": over(samples, 2, STALLED_AGE),
        **outcome(db, ids),
    }


def over(samples: list[tuple[float, float, float]], column: int, threshold: float) -> float:
    """Seconds (between 5 s samples) the column stayed above ``threshold``."""
    return sum(b[0] - a[0] for a, b in itertools.pairwise(samples) if a[column] > threshold)


@contextmanager
def prometheus(api_port: int) -> Iterator[str]:
    """A Prometheus of its own with the appliance's alert rules, scraping the API's metrics
    port every 5 s (as job appliance-api, which the rules name); its base URL."""
    root = Path(tempfile.mkdtemp(prefix="bench-prometheus-"))
    port = local_services.free_port()
    (root / "prometheus.yml").write_text(
        "global: {scrape_interval: 5s, evaluation_interval: 5s}\n"
        f"rule_files: [{RULES}]\n"
        "scrape_configs:\n"
        "  - job_name: appliance-api\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{api_port}']}}]\n"
    )
    proc = subprocess.Popen(
        ["prometheus", f"--config.file={root / 'prometheus.yml'}",
         f"--storage.tsdb.path={root / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=open(root / "prometheus.log", "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not _ready(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((root / "prometheus.log").read_text()[-2000:])
            time.sleep(0.5)
        yield url
    finally:
        stop_process_groups([proc], 10)
        shutil.rmtree(root, ignore_errors=True)


def _ready(url: str) -> bool:
    try:
        return httpx.get(url + "/-/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


class AlertWatch(threading.Thread):
    """Reads which alerts fire every 5 s; when each first fired and was last seen firing,
    in seconds since ``t0``."""

    def __init__(self, url: str, t0: float) -> None:
        super().__init__(daemon=True)
        self.url, self.t0 = url, t0
        self.firing: dict[str, list[float]] = {}  # name -> [first, last]
        self.now: set[str] = set()
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(5):
            try:
                reply = httpx.get(
                    self.url + "/api/v1/query",
                    params={"query": 'ALERTS{alertstate="firing"}'},
                    timeout=5,
                )
                names = {r["metric"]["alertname"] for r in reply.json()["data"]["result"]}
            except (httpx.HTTPError, KeyError, ValueError):
                continue
            t = time.monotonic() - self.t0
            for name in names:
                self.firing.setdefault(name, [t, t])[1] = t
            self.now = names

    def cleared(self, within: float) -> dict[str, dict[str, float | None]]:
        """Waits up to ``within`` s for no alert to fire; each alert's times (cleared: None
        if still firing)."""
        deadline = time.monotonic() + within
        while self.now and time.monotonic() < deadline:
            time.sleep(1)
        self.stop.set()
        return {
            name: {"fired_at": first, "cleared_after": None if name in self.now else last}
            for name, (first, last) in self.firing.items()
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=5000)
    ap.add_argument("--clients", type=int, default=16, help="threads creating jobs")
    ap.add_argument("--pollers", type=int, default=16, help="threads reading status")
    ap.add_argument(
        "--read-rate", type=float, default=200, help="status reads per second, all pollers"
    )
    ap.add_argument("--out", type=Path, default=Path("bench/out/inflight.json"))
    ap.add_argument(
        "--hold", type=float, default=0, help="seconds the jobs wait before workers start"
    )
    ap.add_argument(
        "--alerts",
        action="store_true",
        help="run a Prometheus with the appliance's rules and report the alerts that fire",
    )
    args = ap.parse_args()
    api_port, worker_port = local_services.free_port(), local_services.free_port()
    env = {"APPLIANCE_API_METRICS_PORT": str(api_port)}
    with ExitStack() as stack:
        app = stack.enter_context(appliance(start_workers=False, api_workers=CORES, env_extra=env))
        t0 = time.monotonic()
        watch = None
        if args.alerts:
            watch = AlertWatch(stack.enter_context(prometheus(api_port)), t0)
            watch.start()
        api = JsonApi(app.url, app.key, timeout=120)
        ids, latencies, took = create(api, args.jobs, args.clients)
        print(f"created {len(ids)} jobs in {took:.0f} s ({len(ids) / took:.0f}/s), no worker"
              f" running; POST /v2/jobs: {percentiles(latencies)}", flush=True)  # fmt: skip
        time.sleep(args.hold)
        started = time.monotonic() - t0
        figures = drain(app, ids, args.pollers, args.read_rate, api_port, worker_port)
        if watch is not None:
            figures["alerts"] = watch.cleared(within=180)
        figures["workers_started_at"] = started
    figures = {
        "jobs": args.jobs,
        "create_seconds": took,
        "create_per_second": len(ids) / took,
        "post_jobs": percentiles(latencies),
        "cores": CORES,
        "load_average": os.getloadavg(),
        **figures,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2, default=str))
    for name, value in figures.items():
        print(f"{name}: {value}")


if __name__ == "__main__":
    main()
