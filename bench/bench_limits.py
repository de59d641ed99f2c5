"""The cost of the app's rate limits: GET /v2/jobs/{id} with the limits on (every request
counted per address and per key in Redis, none refused) and off, two appliances side by side,
rounds interleaved.

    .venv/bin/python -m bench.bench_limits [--duration 10] [--rounds 5] [--connections 32]
"""

from __future__ import annotations

import argparse
from contextlib import ExitStack

import httpx

from bench.bench_api import POST_BODY, wrk
from bench.harness import appliance
from bench.sides import interleaved, report

UNREACHABLE = str(10**9)  # a limit nothing reaches: every request is counted, none refused
SIDES = {
    "off": {},
    "on": {
        "APPLIANCE_REQUESTS_PER_MINUTE_PER_ADDRESS": UNREACHABLE,
        "APPLIANCE_REQUESTS_PER_MINUTE_PER_KEY": UNREACHABLE,
    },
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    with ExitStack() as stack:
        urls = {}
        for side, env in SIDES.items():
            app = stack.enter_context(appliance(start_workers=False, env_extra=env))
            auth = {"Authorization": f"Bearer {app.key}"}
            job = httpx.post(app.url + "/v2/jobs", json=POST_BODY, headers=auth).json()["data"]
            urls[side] = (f"{app.url}/v2/jobs/{job['id']}", app.key)
            wrk(*urls[side], 3, args.connections)  # warm-up
        results = interleaved(urls, args.rounds, args.duration, args.connections)
    report(results, "limits")


if __name__ == "__main__":
    main()
