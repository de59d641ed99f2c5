"""html -> pdf pages per minute: the chromium engine (warm Chromium in a sandboxed helper, as a
worker runs it) against a cold ``chromium --headless --print-to-pdf`` per file, on the same
cores. Rounds interleave the two sides (order alternating), so the machine's noise falls on
both alike; medians of the rounds and their ratio are printed. Inputs: the corpus' HTML files
(../shared/corpus/real), each converted ``--copies`` times a round. Both sides print Letter
pages without header or footer.

    .venv/bin/python -m bench.bench_chromium [--rounds 5] [--copies 4] [--parallel 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pypdfium2

from appliance.engines.chromium import CHROMIUM, ChromiumEngine, ChromiumOptions
from appliance.engines.sandbox import HelperPool, Limits, SandboxedEngine

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "real"
COLD = [
    CHROMIUM,
    "--headless",
    "--no-sandbox",  # as the engine's (the bench runs as root)
    "--disable-gpu",
    "--no-pdf-header-footer",
]


def pages(pdf: Path) -> int:
    doc = pypdfium2.PdfDocument(pdf)
    try:
        return len(doc)
    finally:
        doc.close()


def warm_one(engine: SandboxedEngine, src: Path, dst: Path) -> int:
    options = ChromiumOptions(page_format="letter")
    engine.convert(src, dst, "html", "pdf", options, lambda f: None)
    return pages(dst)


def cold_one(src: Path, dst: Path) -> int:
    with tempfile.TemporaryDirectory(prefix="bench-chromium-profile-") as profile:
        subprocess.run(
            [*COLD, f"--user-data-dir={profile}", f"--print-to-pdf={dst}", src.as_uri()],
            check=True,
            capture_output=True,
            timeout=120,
        )
    return pages(dst)


def batch(convert, files: list[Path], out: Path, parallel: int) -> float:
    """Pages per minute of one round."""
    start = time.perf_counter()
    with ThreadPoolExecutor(parallel) as threads:
        made = list(threads.map(lambda n: convert(files[n], out / f"{n}.pdf"), range(len(files))))
    return sum(made) / (time.perf_counter() - start) * 60


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--copies", type=int, default=4)
    ap.add_argument("--parallel", type=int, default=1, help="conversions at once, each side")
    args = ap.parse_args()
    sources = sorted(CORPUS.glob("*.html"))
    files = [src for src in sources for _ in range(args.copies)]
    root = Path(tempfile.mkdtemp(prefix="bench-chromium-"))
    pool = HelperPool(root / "helpers", Limits(timeout_seconds=120), size=args.parallel)
    engine = SandboxedEngine(ChromiumEngine(), pool)
    with ThreadPoolExecutor(args.parallel) as threads:  # every helper started and warm
        list(threads.map(lambda n: warm_one(engine, sources[0], root / f"w{n}.pdf"), range(4)))
    sides = {
        "warm": lambda src, dst: warm_one(engine, src, dst),
        "cold": cold_one,
    }
    results: dict[str, list[float]] = {side: [] for side in sides}
    try:
        for n in range(args.rounds):
            for side in sides if n % 2 == 0 else reversed(list(sides)):
                out = root / f"{side}-{n}"
                out.mkdir()
                results[side].append(batch(sides[side], files, out, args.parallel))
                print(f"round {n + 1} {side}: {results[side][-1]:.0f} pages/min", flush=True)
    finally:
        pool.close()
    print(
        f"{len(files)} files a round ({', '.join(s.name for s in sources)}), "
        f"{args.parallel} at once, {os.cpu_count()} cores"
    )
    for side, rows in results.items():
        print(
            f"{side}: median {statistics.median(rows):.0f} pages/min "
            f"({' '.join(f'{r:.0f}' for r in rows)})"
        )
    paired = [w / c for w, c in zip(results["warm"], results["cold"], strict=True)]
    ratio = statistics.median(results["warm"]) / statistics.median(results["cold"])
    print(
        f"warm / cold: {ratio:.2f} of the medians, "
        f"{statistics.median(paired):.2f} median of the paired rounds"
    )


if __name__ == "__main__":
    main()
