"""A sandbox change's cost, A/B: warm sandboxed conversions of this checkout against another
checkout of the code (``--base``, e.g. ``git archive <commit> | tar -x -C /tmp/base``), each in
a driver process of its own, in short alternating batches so a busy machine weighs on both
alike. Conversions: a 16x16 PNG -> WebP (the sandbox's own round trip; the conversion costs
almost nothing), a 1 MP PNG -> WebP, and a docx -> pdf through the warm LibreOffice. Medians.

    .venv/bin/python -m bench.bench_sandbox_ab --base /tmp/base [--rounds 15] [--batch 10]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
from pathlib import Path

# Runs in each checkout (its own ``appliance``): warm helpers, then one batch per line read.
DRIVER = r"""
import json, subprocess, sys, tempfile, time
from pathlib import Path
import pyvips
from appliance.engines.images import ImageEngine, ImageOptions
from appliance.engines.office import OfficeEngine, OfficeOptions
from appliance.engines.sandbox import HelperPool, Limits, SandboxedEngine
from bench.bench_convert import make_inputs

root = Path(tempfile.mkdtemp())
(root / "in").mkdir()
tiny = root / "in" / "tiny.png"
pyvips.Image.black(16, 16).write_to_file(str(tiny))
photo = make_inputs(root / "in", 1, 1000)[0]
md = root / "doc.md"
md.write_text("# Report\n\n" + "A paragraph of ordinary text for the benchmark. " * 200)
docx = root / "in" / "doc.docx"
subprocess.run(["pandoc", "-o", str(docx), str(md)], check=True)
pool = HelperPool(root / "sandbox", Limits(restart_after=10**6, timeout_seconds=300), size=2)
images, office = SandboxedEngine(ImageEngine(), pool), SandboxedEngine(OfficeEngine(), pool)
cases = {
    "tiny": (images, tiny, "png", "webp", ImageOptions()),
    "photo": (images, photo, "png", "webp", ImageOptions()),
    "docx": (office, docx, "docx", "pdf", OfficeOptions()),
}
def run(kind, n):
    engine, src, a, b, options = cases[kind]
    times = []
    for i in range(n):
        start = time.perf_counter()
        engine.convert(src, root / f"out.{b}", a, b, options, lambda f: None)
        times.append(time.perf_counter() - start)
    return times
for kind in cases:
    run(kind, 3)  # start the helper, load libvips, start LibreOffice
print("ready", flush=True)
for line in sys.stdin:
    kind, n = line.split()
    print(json.dumps(run(kind, int(n))), flush=True)
pool.close()
"""


def start(tree: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", DRIVER],
        cwd=tree,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def batch(proc: subprocess.Popen[str], kind: str, n: int) -> list[float]:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(f"{kind} {n}\n")
    proc.stdin.flush()
    return json.loads(proc.stdout.readline())  # type: ignore[no-any-return]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", type=Path, required=True, help="checkout of the code to compare")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--batch", type=int, default=10)
    args = ap.parse_args()
    sides = {"base": start(args.base), "this": start(Path(__file__).resolve().parent.parent)}
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):
        for kind in ("tiny", "photo", "docx"):
            order = list(sides)
            random.shuffle(order)
            for side in order:
                times.setdefault((side, kind), []).extend(batch(sides[side], kind, args.batch))
    for proc in sides.values():
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait()
    for kind in ("tiny", "photo", "docx"):
        base = statistics.median(times[("base", kind)]) * 1000
        this = statistics.median(times[("this", kind)]) * 1000
        print(
            f"{kind:6} median ms: base {base:.2f}, this {this:.2f}, this/base {this / base:.2f} "
            f"({len(times[('this', kind)])} runs each)"
        )


if __name__ == "__main__":
    main()
