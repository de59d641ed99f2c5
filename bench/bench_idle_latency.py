"""Latency of a job that arrives at an idle worker, and the appliance's idle CPU, for several
values of APPLIANCE_WORKER_POLL_MS side by side (one fresh appliance per value, in turn).

    .venv/bin/python -m bench.bench_idle_latency 1000 100 1000 100

Each job (upload a small png -> convert to webp -> export/url, sync wait) is sent after the
queue has been idle for ``--idle`` seconds; then the appliance's processes are left alone for
20 s and their CPU counted.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyvips

from bench.bench_convert import JsonApi, run_job
from bench.harness import appliance, cpu_seconds, descendants

WARM_JOBS = 4  # more than the engine helpers (one per core)
_SIZES = itertools.count()  # each job's image is another size: the cache never answers


def _timed_job(api: JsonApi, png: Path) -> float:
    """One job on a fresh small png (distinct, so the conversion cache never answers);
    seconds from creating it to the sync answer."""
    pyvips.Image.black(64 + next(_SIZES), 64).write_to_file(str(png))
    start = time.perf_counter()
    run_job(api, png)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("poll_ms", nargs="+", help="APPLIANCE_WORKER_POLL_MS values, in turn")
    ap.add_argument("--jobs", type=int, default=12)
    ap.add_argument("--idle", type=float, default=3.0)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-idle-"))
    for poll in args.poll_ms:
        with appliance(
            queues=("light",),
            separate_workers=True,
            env_extra={"APPLIANCE_WORKER_POLL_MS": poll},
        ) as app:
            api = JsonApi(app.url, app.key, timeout=60)
            # Warm-up: a job per worker thread at once, so each thread's engine helper is
            # started before the clock runs (one helper per core).
            with ThreadPoolExecutor(WARM_JOBS) as pool:
                list(
                    pool.map(
                        lambda i, api=api: _timed_job(api, root / f"warm-{i}-{next(_SIZES)}.png"),
                        range(WARM_JOBS),
                    )
                )
            latencies = []
            for i in range(args.jobs):
                time.sleep(args.idle)
                latencies.append(_timed_job(api, root / f"{i}-{next(_SIZES)}.png"))
            pids = [p for r in app.root_pids for p in [r, *descendants(r)]]
            before = cpu_seconds(pids)
            time.sleep(20)
            idle_cpu = (cpu_seconds(pids) - before) / 20
        print(
            f"poll {poll} ms: job latency after {args.idle:g} s idle median"
            f" {statistics.median(latencies) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms;"
            f" idle CPU of the appliance {100 * idle_cpu:.1f}% of a core",
            flush=True,
        )


if __name__ == "__main__":
    main()
