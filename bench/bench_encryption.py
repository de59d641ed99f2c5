"""Encryption at rest on ÷ off, two appliances side by side (APPLIANCE_ENCRYPT_AT_REST true
and false), rounds interleaved with the order flipping each round, so the machine's noise falls
on both alike:

* 100 MB uploads through the API: MB/s (the upload is sealed as it is spooled);
* the image mix through the API: conversions per minute, each a job upload -> convert ->
  export/url with PNG -> WebP, PNG -> JPEG and PNG -> TIFF in turn (every input differs, so
  the conversion cache never answers; the worker opens the input and seals the output).

The interleaving is bench/sides.py's, for jobs rather than wrk's requests.

    .venv/bin/python -m bench.bench_encryption [--rounds 3] [--uploads 3] [--size-mb 100]
        [--images 24] [--size 1000] [--clients 4]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

from bench.bench_convert import CORES, JsonApi, make_inputs, run_job, upload
from bench.harness import Running, appliance, cpu_seconds, descendants

MIX = ("webp", "jpg", "tiff")  # output formats, in turn; the inputs are PNG
SIDES = ("on", "off")


def mix_job(fmt: str) -> dict:
    return {
        "tasks": {
            "up": {"operation": "import/upload"},
            "c": {"operation": "convert", "input": "up", "output_format": fmt},
            "e": {"operation": "export/url", "input": "c"},
        }
    }


def side_cpu(app: Running) -> float:
    """CPU seconds used so far by one appliance: API, workers, engine helpers, Postgres and
    Redis (what the other helpers on a shared machine do is not in it, unlike wall time)."""
    pids = [*app.root_pids, *(d for p in app.root_pids for d in descendants(p))]
    return cpu_seconds(pids)


def upload_speed(app: Running, src: Path, uploads: int, salt: int) -> tuple[float, float]:
    """Median MB/s of ``uploads`` uploads of ``src`` (a new hash each: nothing
    deduplicated), and the appliance's CPU ms per upload."""
    api = JsonApi(app.url, app.key)
    speeds = []
    cpu = side_cpu(app)
    for i in range(uploads):
        with open(src, "r+b") as fh:
            fh.write((salt * 1000 + i).to_bytes(8, "big"))
        form = api.call("POST", "/v2/import/upload", {})["data"]["result"]["form"]
        start = time.perf_counter()
        upload(form, src)
        speeds.append(src.stat().st_size / (time.perf_counter() - start) / 1e6)
    return statistics.median(speeds), (side_cpu(app) - cpu) / uploads * 1000


def mix_rate(app: Running, paths: list[Path], clients: int) -> tuple[float, float]:
    """Image-mix jobs per minute, ``clients`` at a time, and the appliance's CPU ms per job."""
    api = JsonApi(app.url, app.key)
    jobs = [(p, mix_job(MIX[i % len(MIX)])) for i, p in enumerate(paths)]
    cpu = side_cpu(app)
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(lambda job: run_job(api, job[0], job[1]), jobs))
    rate = len(jobs) / (time.perf_counter() - start) * 60
    return rate, (side_cpu(app) - cpu) / len(jobs) * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--uploads", type=int, default=3)
    ap.add_argument("--size-mb", type=int, default=100)
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--size", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=4)
    args = ap.parse_args()
    speed: dict[str, list[float]] = {s: [] for s in SIDES}
    rate: dict[str, list[float]] = {s: [] for s in SIDES}
    upload_cpu: dict[str, list[float]] = {s: [] for s in SIDES}
    mix_cpu: dict[str, list[float]] = {s: [] for s in SIDES}
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        apps = {
            side: stack.enter_context(
                appliance(
                    worker_processes=CORES,
                    worker_threads=2,
                    env_extra={"APPLIANCE_ENCRYPT_AT_REST": str(side == "on").lower()},
                )
            )
            for side in SIDES
        }
        src = Path(tmp) / "big.bin"
        with open(src, "wb") as fh:  # incompressible
            for _ in range(args.size_mb):
                fh.write(os.urandom(1 << 20))
        warm = make_inputs(Path(tmp), 1, 64)[0]
        for app in apps.values():  # warm up: engines, connections, the data key
            run_job(JsonApi(app.url, app.key), warm, mix_job("webp"))
        for r in range(args.rounds):
            root = Path(tmp) / f"r{r}"
            root.mkdir()
            order = SIDES if r % 2 == 0 else tuple(reversed(SIDES))
            for n, side in enumerate(order):
                (root / side).mkdir()
                paths = make_inputs(root / side, args.images, args.size)
                mbps, cpu = upload_speed(apps[side], src, args.uploads, r * 10 + n)
                speed[side].append(mbps)
                upload_cpu[side].append(cpu)
                per_min, cpu = mix_rate(apps[side], paths, args.clients)
                rate[side].append(per_min)
                mix_cpu[side].append(cpu)
            print(
                f"round {r + 1}: upload MB/s on {speed['on'][-1]:.0f} off {speed['off'][-1]:.0f};"
                f" image mix/min on {rate['on'][-1]:.0f} off {rate['off'][-1]:.0f}"
            )
    report("100 MB upload, MB/s", speed)
    report("100 MB upload, appliance CPU ms per upload", upload_cpu)
    report(f"image mix ({', '.join(MIX)}) conversions/min", rate)
    report("image mix, appliance CPU ms per job", mix_cpu)


def report(label: str, results: dict[str, list[float]]) -> None:
    on, off = statistics.median(results["on"]), statistics.median(results["off"])
    paired = statistics.median(a / b for a, b in zip(results["on"], results["off"], strict=True))
    print(
        f"{label}: on {on:.0f}, off {off:.0f}, on / off {on / off:.3f}"
        f" (median of paired rounds {paired:.3f}); rounds on {_fmt(results['on'])}"
        f" off {_fmt(results['off'])}"
    )


def _fmt(values: list[float]) -> str:
    return " ".join(f"{v:.0f}" for v in values)


if __name__ == "__main__":
    main()
