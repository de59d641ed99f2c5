"""The cost of the app's rate limits: GET /v2/jobs/{id} with the limits on (every request
counted per address and per key in Redis, none refused) and off, two appliances side by side,
rounds interleaved.

    .venv/bin/python -m bench.bench_limits [--duration 10] [--rounds 5] [--connections 32]
"""

from __future__ import annotations

import argparse
import statistics
from contextlib import ExitStack

import httpx

from bench.bench_api import POST_BODY, wrk
from bench.harness import appliance

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
        results: dict[str, list[tuple[float, float]]] = {side: [] for side in SIDES}
        for n in range(args.rounds):  # interleaved, the order alternating
            for side in SIDES if n % 2 == 0 else reversed(SIDES):
                url, key = urls[side]
                results[side].append(wrk(url, key, args.duration, args.connections))
    print(f"{'limits':8} {'median req/s':>12} {'p99 ms':>8}   rounds (req/s)")
    for side, rows in results.items():
        rps = statistics.median(r for r, _ in rows)
        p99 = statistics.median(p for _, p in rows)
        print(f"{side:8} {rps:12.0f} {p99:8.1f}   {' '.join(f'{r:.0f}' for r, _ in rows)}")
    on = statistics.median(r for r, _ in results["on"])
    off = statistics.median(r for r, _ in results["off"])
    pairs = zip(results["on"], results["off"], strict=True)
    paired = statistics.median(a[0] / b[0] for a, b in pairs)
    p99_added = statistics.median(p for _, p in results["on"]) - statistics.median(
        p for _, p in results["off"]
    )
    print(
        f"on / off: {on / off:.3f} (median of paired rounds {paired:.3f});"
        f" p99 added: {p99_added:+.1f} ms"
    )


if __name__ == "__main__":
    main()
