"""PDF operations and calibre e-book conversions through the warm sandboxed helper: median
milliseconds per run (after one warm-up run each), on inputs made here.

    .venv/bin/python -m bench.bench_documents [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pyvips

from appliance.engines.ebooks import CalibreEngine, EbookOptions
from appliance.engines.pdftools import (
    ImagePdfOptions,
    ImagesToPdfEngine,
    MergeEngine,
    MergeOptions,
    OptimizeEngine,
    OptimizeOptions,
    PdfPdfOptions,
    PdfToPdfEngine,
    SplitEngine,
    SplitOptions,
)
from appliance.engines.sandbox import HelperPool, Limits, SandboxedEngine


def _nothing(fraction: float) -> None:
    pass


def median_ms(action: Callable[[], object], runs: int) -> float:
    action()  # warm-up: the helper starts and loads its libraries
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def inputs(root: Path) -> dict[str, Path]:
    photo = pyvips.Image.gaussnoise(1200, 800, mean=128, sigma=40).cast("uchar")
    photo = photo.bandjoin([photo, photo]).copy(xres=300 / 25.4, yres=300 / 25.4)
    made = {"png": root / "photo.png", "jpg": root / "photo.jpg"}
    photo.write_to_file(str(made["png"]))
    photo.jpegsave(str(made["jpg"]), Q=90)
    md = root / "book.md"
    chapters = "\n\n".join(
        f"# Chapter {n}\n\n" + "Some text of the book. " * 200 for n in range(10)
    )
    md.write_text(chapters)
    made["epub"] = root / "book.epub"
    subprocess.run(
        ["pandoc", "-s", "--metadata", "title=Bench", "-o", str(made["epub"]), str(md)],
        check=True,
    )
    return made


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        made = inputs(root)
        pool = HelperPool(root / "pool", Limits(timeout_seconds=300))
        out = root / "out"
        out.mkdir()
        images = SandboxedEngine(ImagesToPdfEngine(), pool)
        pdf = out / "photo.pdf"
        images.convert(made["png"], pdf, "png", "pdf", ImagePdfOptions(), _nothing)
        ten = out / "ten.pdf"
        SandboxedEngine(MergeEngine(), pool).combine(
            [pdf] * 10, ten, "pdf", MergeOptions(), _nothing
        )

        def convert(engine, src, name, sf, df, options):  # type: ignore[no-untyped-def]
            return lambda: SandboxedEngine(engine, pool).convert(
                src, out / name, sf, df, options, _nothing
            )

        cases = {
            "png (1200x800) -> pdf": convert(
                ImagesToPdfEngine(), made["png"], "a.pdf", "png", "pdf", ImagePdfOptions()
            ),
            "jpg -> pdf": convert(
                ImagesToPdfEngine(), made["jpg"], "b.pdf", "jpg", "pdf", ImagePdfOptions()
            ),
            "merge 10 x 1 page": lambda: SandboxedEngine(MergeEngine(), pool).combine(
                [pdf] * 10, out / "m.pdf", "pdf", MergeOptions(), _nothing
            ),
            "split 10 pages": convert(SplitEngine(), ten, "s.pdf", "pdf", "pdf", SplitOptions()),
            "optimize web (10 pages)": convert(
                OptimizeEngine(), ten, "o.pdf", "pdf", "pdf", OptimizeOptions(profile="web")
            ),
            "pdf -> PDF/A-2b (10 pages)": convert(
                PdfToPdfEngine(), ten, "pa.pdf", "pdf", "pdf", PdfPdfOptions(pdf_a=True)
            ),
            "optimize jpg web": convert(
                OptimizeEngine(), made["jpg"], "o.jpg", "jpg", "jpg", OptimizeOptions()
            ),
        }
        for target in ("mobi", "azw3", "fb2", "docx", "pdf"):
            cases[f"calibre epub -> {target}"] = convert(
                CalibreEngine(), made["epub"], f"book.{target}", "epub", target, EbookOptions()
            )
        print(f"cpus={os.cpu_count()} runs={args.runs} (median ms, warm sandboxed helper)")
        for name, action in cases.items():
            print(f"{name:32s} {median_ms(action, args.runs):9.0f}")
        pool.close()


if __name__ == "__main__":
    main()
