"""(a) GET /v2/jobs/{id} and (b) POST /v2/jobs throughput, each as a ratio to a trivial
endpoint (/health/live) on the same server, measured side by side with wrk.

    .venv/bin/python -m bench.bench_api [--duration 10] [--connections 32] [--rounds 3]
                                        [--api-workers 1]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import tempfile

import httpx

from bench.harness import appliance

POST_BODY = {
    "tasks": {
        "up": {"operation": "import/upload"},
        "c": {"operation": "convert", "input": "up", "output_format": "webp", "width": 100},
        "e": {"operation": "export/url", "input": "c"},
    }
}


def wrk(
    url: str, key: str, duration: int, connections: int, script: str | None = None
) -> tuple[float, float]:
    """(requests/s, p99 latency ms) from wrk with one thread (the machine has 2 cores)."""
    cmd = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{duration}s",
        "--latency",
        "-H",
        f"Authorization: Bearer {key}",
        url,
    ]
    if script:
        cmd[1:1] = ["-s", script]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise RuntimeError(f"{non2xx.group(1)} failed requests against {url}:\n{out}")
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    return rps, float(p99.group(1)) * scale


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--api-workers", type=int, default=1)
    args = ap.parse_args()
    with (
        appliance(start_workers=False) as app,
        tempfile.NamedTemporaryFile("w", suffix=".lua") as lua,
    ):
        lua.write(
            'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
            f"wrk.body = [[{json.dumps(POST_BODY)}]]\n"
        )
        lua.flush()
        job = httpx.post(
            app.url + "/v2/jobs", json=POST_BODY, headers={"Authorization": f"Bearer {app.key}"}
        ).json()["data"]
        targets = {
            "trivial GET /health/live": (app.url + "/health/live", None),
            "GET /v2/jobs/{id}": (f"{app.url}/v2/jobs/{job['id']}", None),
            "POST /v2/jobs (3 tasks)": (app.url + "/v2/jobs", lua.name),
        }
        results: dict[str, list[tuple[float, float]]] = {k: [] for k in targets}
        wrk(app.url + "/health/live", app.key, 3, args.connections)  # warm-up
        for _ in range(args.rounds):  # interleaved, so noise hits all alike
            for name, (url, script) in targets.items():
                results[name].append(wrk(url, app.key, args.duration, args.connections, script))
    base = statistics.median(r for r, _ in results["trivial GET /health/live"])
    print(f"{'endpoint':28} {'median req/s':>12} {'ratio':>6} {'p99 ms':>8}")
    for name, rows in results.items():
        rps = statistics.median(r for r, _ in rows)
        p99 = statistics.median(p for _, p in rows)
        print(f"{name:28} {rps:12.0f} {rps / base:6.2f} {p99:8.1f}")


if __name__ == "__main__":
    main()
