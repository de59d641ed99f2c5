"""The sandbox's cost: image conversions through a warm sandboxed helper vs the same conversion
in-process (ratio of throughput), and the added latency per engine run (a tiny image, where
the conversion itself costs almost nothing). Interleaved rounds; medians.

    .venv/bin/python -m bench.bench_sandbox [--images 40] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import pyvips

from appliance.engines.images import ImageEngine, ImageOptions
from appliance.engines.sandbox import HelperPool, Limits, SandboxedEngine
from bench.bench_convert import make_inputs


def run(engine, paths: list[Path], out: Path) -> list[float]:
    times = []
    for i, src in enumerate(paths):
        start = time.perf_counter()
        engine.convert(src, out / f"o{i}.webp", "png", "webp", ImageOptions(), lambda f: None)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "in").mkdir()
        (root / "out").mkdir()
        photos = make_inputs(root / "in", args.images, 1000)
        tiny = root / "in" / "tiny.png"
        pyvips.Image.black(16, 16).write_to_file(str(tiny))
        pool = HelperPool(root / "sandbox", Limits(restart_after=10_000))
        direct, boxed = ImageEngine(), SandboxedEngine(ImageEngine(), pool)
        run(direct, photos[:2], root / "out")
        run(boxed, photos[:2], root / "out")  # start the helper, load libvips
        rate = {"in-process": [], "sandboxed": []}
        tiny_ms = {"in-process": [], "sandboxed": []}
        for _ in range(args.rounds):
            for name, engine in (("in-process", direct), ("sandboxed", boxed)):
                rate[name].append(len(photos) / sum(run(engine, photos, root / "out")))
                tiny_ms[name] += [t * 1000 for t in run(engine, [tiny] * 50, root / "out")]
        pool.close()
    r_direct = statistics.median(rate["in-process"])
    r_boxed = statistics.median(rate["sandboxed"])
    added = statistics.median(tiny_ms["sandboxed"]) - statistics.median(tiny_ms["in-process"])
    print(
        f"1 MP PNG -> WebP, one at a time: in-process {r_direct * 60:.0f}/min, sandboxed "
        f"{r_boxed * 60:.0f}/min, ratio {r_boxed / r_direct:.2f}"
    )
    print(
        f"16x16 PNG -> WebP median: in-process {statistics.median(tiny_ms['in-process']):.2f} "
        f"ms, sandboxed {statistics.median(tiny_ms['sandboxed']):.2f} ms: added {added:.2f} ms"
    )


if __name__ == "__main__":
    main()
