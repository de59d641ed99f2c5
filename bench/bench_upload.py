"""(d) 100 MB uploads through the API: MB/s, and how much the API processes' memory (RSS)
grows. The upload streams to storage while hashing, so RSS should not grow with file size.

    .venv/bin/python -m bench.bench_upload [--size-mb 100] [--uploads 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from bench.bench_convert import upload
from bench.harness import appliance, rss_kib


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=100)
    ap.add_argument("--uploads", type=int, default=5)
    args = ap.parse_args()
    size = args.size_mb * 1024 * 1024
    with tempfile.TemporaryDirectory() as tmp, appliance(start_workers=False) as app:
        src = Path(tmp) / "big.bin"
        with open(src, "wb") as fh:  # incompressible, and different per run
            for _ in range(args.size_mb):
                fh.write(os.urandom(1024 * 1024))
        headers = {"Authorization": f"Bearer {app.key}"}
        with httpx.Client(base_url=app.url, headers=headers, timeout=300) as api:
            # A small upload first, so start-up allocations are not counted as growth.
            warm = Path(tmp) / "warm.bin"
            warm.write_bytes(os.urandom(1024 * 1024))
            job = api.post("/v2/import/upload", json={}).json()["data"]
            upload(job["result"]["form"], warm)
            rss_before = rss_kib(app.api_pids)
            speeds, peak = [], rss_before
            for i in range(args.uploads):
                with open(src, "r+b") as fh:  # a new hash each time: nothing deduplicated
                    fh.write(i.to_bytes(4, "big"))
                job = api.post("/v2/import/upload", json={}).json()["data"]
                start = time.perf_counter()
                upload(job["result"]["form"], src)
                speeds.append(size / (time.perf_counter() - start) / 1e6)
                peak = max(peak, rss_kib(app.api_pids))
            rss_after = rss_kib(app.api_pids)
    print(
        f"{args.uploads} uploads of {args.size_mb} MB: median {statistics.median(speeds):.0f} "
        f"MB/s (min {min(speeds):.0f}, max {max(speeds):.0f}); API RSS "
        f"{rss_before / 1024:.0f} MB before, {rss_after / 1024:.0f} MB after, peak "
        f"{peak / 1024:.0f} MB: growth {(rss_after - rss_before) / 1024:+.1f} MB"
    )


if __name__ == "__main__":
    main()
