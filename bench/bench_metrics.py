"""What the HTTP metrics cost: the same API with the metrics wrapper (as shipped) and without
it, side by side on one database, wrk against GET /v2/jobs/{id} and the trivial
/health/live, interleaved rounds (the order flips every round), medians. Besides req/s it
reports the API processes' CPU time per request, which a busy shared machine disturbs less.

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
from appliance.cli import asgi
from appliance.metrics.http import HttpMetrics
from appliance.supervisor import stop_process_groups
from bench.bench_api import POST_BODY, wrk
from bench.harness import _children, appliance, cpu_seconds

ROOT = Path(__file__).parents[1]


def app_without_metrics() -> Litestar:
    """The shipped app with the metrics wrapper taken off again (granian factory)."""
    app = asgi()
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
            servers = {
                "metrics on": (app.url, app.api_pids),
                "metrics off": (plain_url, [plain.pid, *_children(plain.pid)]),
            }
            results: dict[tuple[str, str], list[tuple[float, float]]] = {}
            wrk(app.url + "/health/live", app.key, 3, args.connections)  # warm-up
            wrk(plain_url + "/health/live", app.key, 3, args.connections)
            for n in range(args.rounds):  # interleaved, so noise hits both alike
                order = list(servers.items())[:: 1 if n % 2 == 0 else -1]
                for pname, path in paths.items():
                    for sname, (base, pids) in order:
                        cpu = cpu_seconds(pids)
                        rps, _ = wrk(base + path, app.key, args.duration, args.connections)
                        us = (cpu_seconds(pids) - cpu) / (rps * args.duration) * 1e6
                        results.setdefault((pname, sname), []).append((rps, us))
        finally:
            stop_process_groups([plain], 20)
    head = f"{'endpoint':18} {'req/s on':>9} {'off':>7} {'on/off':>7}"
    print(f"{head}   {'CPU µs/req on':>13} {'off':>6}")
    for pname in paths:
        on = statistics.median(r for r, _ in results[(pname, "metrics on")])
        off = statistics.median(r for r, _ in results[(pname, "metrics off")])
        cpu_on = statistics.median(c for _, c in results[(pname, "metrics on")])
        cpu_off = statistics.median(c for _, c in results[(pname, "metrics off")])
        print(f"{pname:18} {on:9.0f} {off:7.0f} {on / off:7.3f}   {cpu_on:13.1f} {cpu_off:6.1f}")
    print(f"(wrk -t1 -c{args.connections} -d{args.duration}s, {args.rounds} rounds)")


if __name__ == "__main__":
    main()
