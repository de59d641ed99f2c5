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
import resource
import statistics
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pypdfium2

from appliance.engines.chromium import CHROMIUM, ChromiumEngine, ChromiumOptions
from appliance.engines.sandbox import HelperPool, Limits, SandboxedEngine
from bench.harness import descendants

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


def tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and its descendants so far, with what their reaped children
    used (Chromium's renderers come and go below the browser)."""
    ticks = 0
    for p in [pid, *descendants(pid)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        ticks += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def helpers_cpu() -> float:
    """The warm side: this process's children (the helpers' sandboxes) and below; no cold
    chromium runs meanwhile."""
    out = subprocess.run(["pgrep", "-P", str(os.getpid())], capture_output=True, text=True)
    return sum(tree_cpu(int(pid)) for pid in out.stdout.split())


def cold_cpu() -> float:
    """The cold side: the chromium runs this process waited for, and their children."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def batch(convert, cpu, files: list[Path], out: Path, parallel: int) -> tuple[float, float]:
    """Pages per minute of one round, and CPU seconds per page (``cpu()``: the side's CPU
    seconds so far)."""
    start, cpu_start = time.perf_counter(), cpu()
    with ThreadPoolExecutor(parallel) as threads:
        made = list(threads.map(lambda n: convert(files[n], out / f"{n}.pdf"), range(len(files))))
    seconds, pages = time.perf_counter() - start, sum(made)
    return pages / seconds * 60, (cpu() - cpu_start) / pages


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
        "warm": (lambda src, dst: warm_one(engine, src, dst), helpers_cpu),
        "cold": (cold_one, cold_cpu),
    }
    results: dict[str, list[float]] = {side: [] for side in sides}
    cpu: dict[str, list[float]] = {side: [] for side in sides}
    try:
        for n in range(args.rounds):
            for side in sides if n % 2 == 0 else reversed(list(sides)):
                out = root / f"{side}-{n}"
                out.mkdir()
                rate, per_page = batch(*sides[side], files, out, args.parallel)
                results[side].append(rate)
                cpu[side].append(per_page)
                print(
                    f"round {n + 1} {side}: {rate:.0f} pages/min, {per_page:.3f} CPU s/page",
                    flush=True,
                )
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
        f"{statistics.median(paired):.2f} median of the paired rounds; CPU per page cold / "
        f"warm: {statistics.median(cpu['cold']) / statistics.median(cpu['warm']):.2f}"
    )


if __name__ == "__main__":
    main()
