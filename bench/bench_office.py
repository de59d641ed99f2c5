"""docx -> pdf per minute: the warm LibreOffice in a sandboxed helper vs a cold
`soffice --headless --convert-to` per file (both on this machine, side by side, interleaved).

Engine level, not yet through the full API path (issue 3 asks for that, and for unoserver as a
second baseline; both are still to do).

    .venv/bin/python -m bench.bench_office [--files 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from appliance.engines.office import OfficeEngine, OfficeOptions
from appliance.engines.sandbox import HelperPool, Limits, SandboxedEngine


def make_docx(root: Path, count: int) -> list[Path]:
    md = root / "doc.md"
    md.write_text("# Report\n\n" + "A paragraph of ordinary text for the benchmark. " * 200)
    paths = []
    for i in range(count):
        path = root / f"d{i}.docx"
        subprocess.run(["pandoc", "-o", str(path), str(md)], check=True)
        paths.append(path)
    return paths


def cold(paths: list[Path], out: Path) -> float:
    start = time.perf_counter()
    for p in paths:
        subprocess.run(
            [
                "soffice",
                "--headless",
                "--norestore",
                f"-env:UserInstallation={(out / 'profile').as_uri()}",
                "--convert-to",
                "pdf",
                "--outdir",
                str(out),
                str(p),
            ],
            check=True,
            capture_output=True,
        )
    return len(paths) / (time.perf_counter() - start) * 60


def warm(engine: SandboxedEngine, paths: list[Path], out: Path) -> float:
    start = time.perf_counter()
    for i, p in enumerate(paths):
        engine.convert(p, out / f"w{i}.pdf", "docx", "pdf", OfficeOptions(), lambda f: None)
    return len(paths) / (time.perf_counter() - start) * 60


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "out").mkdir()
        paths = make_docx(root, args.files)
        pool = HelperPool(root / "sandbox", Limits(timeout_seconds=120))
        engine = SandboxedEngine(OfficeEngine(), pool)
        warm(engine, paths[:1], root / "out")  # start the listener once
        cold(paths[:1], root / "out")  # first-run profile creation is not counted
        results: dict[str, list[float]] = {"cold": [], "warm": []}
        for _ in range(args.rounds):
            results["cold"].append(cold(paths, root / "out"))
            results["warm"].append(warm(engine, paths, root / "out"))
        pool.close()
    c, w = statistics.median(results["cold"]), statistics.median(results["warm"])
    print(
        f"docx -> pdf, one at a time: cold soffice {c:.0f}/min, warm sandboxed listener "
        f"{w:.0f}/min, ratio {w / c:.1f}x"
    )


if __name__ == "__main__":
    main()
