"""Status reads from the cache: GET /v2/jobs/{id} (a job of three tasks) with the status cache
on and off, two appliances side by side, rounds interleaved; and each side's rate as a share
of a trivial endpoint (/health/live) on the same server, the goal being >= 0.5 with the cache.

    .venv/bin/python -m bench.bench_status_cache [--duration 10] [--rounds 5] [--connections 32]
"""

from __future__ import annotations

import argparse
import statistics
from contextlib import ExitStack

import httpx

from bench.bench_api import POST_BODY, wrk
from bench.harness import appliance
from bench.sides import Rounds, interleaved, report

SIDES = {"on": {"APPLIANCE_STATUS_CACHE": "1"}, "off": {"APPLIANCE_STATUS_CACHE": "0"}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    with ExitStack() as stack:
        jobs, trivial = {}, {}
        for side, env in SIDES.items():
            app = stack.enter_context(appliance(start_workers=False, env_extra=env))
            auth = {"Authorization": f"Bearer {app.key}"}
            made = httpx.post(app.url + "/v2/jobs", json=POST_BODY, headers=auth)
            jobs[side] = (f"{app.url}/v2/jobs/{made.json()['data']['id']}", app.key)
            trivial[f"trivial-{side}"] = (app.url + "/health/live", app.key)
            wrk(*jobs[side], 3, args.connections)  # warm-up
        results = interleaved({**jobs, **trivial}, args.rounds, args.duration, args.connections)
    report({side: results[side] for side in SIDES}, "cache")
    for side in SIDES:
        ratios = _paired(results, side, f"trivial-{side}")
        print(f"GET /v2/jobs/{{id}} / trivial, cache {side}: {statistics.median(ratios):.2f}")


def _paired(results: Rounds, side: str, base: str) -> list[float]:
    return [a[0] / b[0] for a, b in zip(results[side], results[base], strict=True)]


if __name__ == "__main__":
    main()
