"""The cost of usage metering per job: CPU seconds a job takes on the whole appliance (API,
worker, its sandboxed helpers, Postgres, Redis) with metering on (the default) and off
(APPLIANCE_USAGE_METERING=false: the counting triggers do nothing), two appliances side by
side, rounds interleaved. A job is a small conversion, the worst case for a per-job cost:
import/base64 of a 160x160 PNG no job converted before (no conversion-cache hit), convert to
WebP, export/url. Also the cost of the helper's own CPU measurement (``cpu_seconds``, run
twice a conversion inside the sandbox, on both sides), timed in a sandbox of its own.

    .venv/bin/python -m bench.bench_usage [--jobs 60] [--rounds 5] [--clients 6]
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import httpx
import psycopg
import pyvips

import appliance as appliance_package
from appliance.engines.sandbox import sandbox_argv
from bench.harness import Running, appliance, descendants

# Helpers are not replaced during the run: a replaced helper's process group is killed at
# once, its processes reaped outside the appliance's tree, and their CPU time lost to the count.
COMMON = {"APPLIANCE_ENGINE_RESTART_AFTER": "1000000"}
SIDES = {"on": COMMON, "off": {**COMMON, "APPLIANCE_USAGE_METERING": "false"}}
MEASURE = (
    "import timeit; from appliance.engines.helper import cpu_seconds;"
    " n = 2000; print(timeit.timeit(cpu_seconds, number=n) / n)"
)


def _job() -> dict:
    noise = pyvips.Image.gaussnoise(160, 160, mean=128, sigma=40).cast("uchar")
    data = base64.b64encode(noise.write_to_buffer(".png")).decode()
    return {
        "tasks": {
            "in": {"operation": "import/base64", "file": data, "filename": "n.png"},
            "c": {"operation": "convert", "input": "in", "output_format": "webp"},
            "e": {"operation": "export/url", "input": "c"},
        }
    }


def _run(api: httpx.Client, body: dict) -> None:
    made = api.post("/v2/jobs", json=body)
    made.raise_for_status()
    job = api.get(f"/sync/v2/jobs/{made.json()['data']['id']}").json()["data"]
    assert job["status"] == "finished", job


def _pids(app: Running) -> list[int]:
    return [p for r in app.root_pids for p in [r, *descendants(r)]]


def _round(app: Running, jobs: int, clients: int) -> float:
    """CPU seconds per job over one round of ``jobs`` jobs, ``clients`` at a time."""
    bodies = [_job() for _ in range(jobs)]
    auth = {"Authorization": f"Bearer {app.key}"}
    before = _total_cpu(app)
    with (
        httpx.Client(base_url=app.url, headers=auth, timeout=120) as api,
        ThreadPoolExecutor(clients) as pool,
    ):
        list(pool.map(lambda body: _run(api, body), bodies))
    return (_total_cpu(app) - before) / jobs


def _total_cpu(app: Running) -> float:
    """CPU seconds used so far by the appliance's processes alive now, with those of their
    children that ended (a helper replaced, a Postgres backend gone): in the parent's
    cutime/cstime once reaped, so nothing is lost or counted twice."""
    hz = os.sysconf("SC_CLK_TCK")
    ticks = 0
    for pid in _pids(app):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        ticks += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return ticks / hz


def _counted(app: Running) -> int:
    """Tasks ended that usage_daily holds."""
    with psycopg.connect(app.env["APPLIANCE_DATABASE_URL"]) as conn:
        row = conn.execute("SELECT coalesce(sum(tasks_ended), 0) FROM usage_daily").fetchone()
    return int(row[0]) if row else 0


def _measure_cost() -> float:
    """Seconds one ``cpu_seconds()`` takes inside a sandbox, as in a helper."""
    root = Path(appliance_package.__file__).resolve().parent.parent
    code = f"import sys; sys.path.insert(0, {str(root)!r}); {MEASURE}"
    with tempfile.TemporaryDirectory() as work:
        Path(work).chmod(0o777)
        argv = sandbox_argv(Path(work), [sys.executable, "-I", "-c", code])
        done = subprocess.run(argv, capture_output=True, text=True, check=True)
    return float(done.stdout.split()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--clients", type=int, default=6)
    args = ap.parse_args()
    per_call = _measure_cost()
    with ExitStack() as stack:
        apps = {
            side: stack.enter_context(appliance(env_extra=env, worker_threads=4))
            for side, env in SIDES.items()
        }
        for app in apps.values():
            _round(app, 10, args.clients)  # warm-up: helpers started, pools filled
        results: dict[str, list[float]] = {side: [] for side in SIDES}
        for n in range(args.rounds):  # interleaved, the order alternating
            for side in SIDES if n % 2 == 0 else reversed(SIDES):
                started = time.monotonic()
                results[side].append(_round(apps[side], args.jobs, args.clients))
                print(f"round {n} {side}: {time.monotonic() - started:.1f} s", file=sys.stderr)
        counted = {side: _counted(app) for side, app in apps.items()}
        assert counted["on"] > 0 == counted["off"], counted  # each side is what it says
    print(f"{'metering':8} {'CPU ms/job':>10}   rounds (ms/job)")
    for side, rows in results.items():
        print(
            f"{side:8} {statistics.median(rows) * 1000:10.1f}"
            f"   {' '.join(f'{r * 1000:.1f}' for r in rows)}"
        )
    paired = statistics.median(
        off / on for on, off in zip(results["on"], results["off"], strict=True)
    )
    on, off = statistics.median(results["on"]), statistics.median(results["off"])
    print(
        f"jobs per CPU second, on / off: {off / on:.3f} (median of paired rounds"
        f" {paired:.3f}); metering costs {(on - off) * 1000:+.2f} ms CPU a job"
    )
    print(
        f"the helper's measurement: {per_call * 1e6:.0f} us a call, two a conversion"
        f" (on both sides)"
    )


if __name__ == "__main__":
    main()
