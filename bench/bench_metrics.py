"""What the HTTP metrics cost: the same API with the metrics wrapper (as shipped) and without
it, side by side on one database, wrk against GET /v2/jobs/{id} and the trivial
/health/live, interleaved rounds, medians.

    .venv/bin/python -m bench.bench_metrics [--duration 10] [--connections 32] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
from litestar import Litestar

from appliance import local_services
from appliance.api.app import create_app
from appliance.metrics.http import HttpMetrics
from appliance.supervisor import stop_process_groups
from bench.bench_api import POST_BODY, wrk
from bench.harness import appliance

ROOT = Path(__file__).parents[1]


def app_without_metrics() -> Litestar:
    """The shipped app with the metrics wrapper taken off again (granian factory)."""
    app = create_app()
    assert isinstance(app.asgi_handler, HttpMetrics)
    app.asgi_handler = app.asgi_handler.app
    return app


def start_plain_api(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = local_services.free_port()
    cmd = [
        sys.executable,
        *("-m", "granian", "--interface", "asgi", "--factory", "--host", "127.0.0.1"),
        *("--port", str(port), "--workers", "1", "--no-access-log"),
        "bench.bench_metrics:app_without_metrics",
    ]
    proc = subprocess.Popen(
        cmd,
        env={**env, "APPLIANCE_PORT": str(port)},
        cwd=ROOT,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health/ready", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    stop_process_groups([proc], 10)
    raise RuntimeError(log.read_text()[-3000:])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with appliance(start_workers=False) as app:
        env = {k: v for k, v in app.env.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        plain, plain_url = start_plain_api(env, app.data_dir.parent / "plain.log")
        try:
            job = httpx.post(
                app.url + "/v2/jobs", json=POST_BODY, headers={"Authorization": f"Bearer {app.key}"}
            ).json()["data"]
            paths = {
                "GET /v2/jobs/{id}": f"/v2/jobs/{job['id']}",
                "GET /health/live": "/health/live",
            }
            servers = {"metrics on": app.url, "metrics off": plain_url}
            results: dict[tuple[str, str], list[float]] = {}
            wrk(app.url + "/health/live", app.key, 3, args.connections)  # warm-up
            wrk(plain_url + "/health/live", app.key, 3, args.connections)
            for _ in range(args.rounds):  # interleaved, so noise hits both alike
                for pname, path in paths.items():
                    for sname, base in servers.items():
                        rps, _ = wrk(base + path, app.key, args.duration, args.connections)
                        results.setdefault((pname, sname), []).append(rps)
        finally:
            stop_process_groups([plain], 20)
    print(f"{'endpoint':20} {'metrics on':>11} {'metrics off':>12} {'on/off':>7}")
    for pname in paths:
        on = statistics.median(results[(pname, "metrics on")])
        off = statistics.median(results[(pname, "metrics off")])
        print(f"{pname:20} {on:11.0f} {off:12.0f} {on / off:7.3f}")
    print(f"(wrk -t1 -c{args.connections} -d{args.duration}s, {args.rounds} rounds)")


if __name__ == "__main__":
    main()
