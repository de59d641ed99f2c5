"""What a warm LibreOffice listener costs to (re)start and how it grows: soffice.bin's CPU and
RSS after its start plus one document, then after each batch of conversions (unsandboxed
listener, restarts off), read from /proc.

    .venv/bin/python -m bench.bench_office_listener [--per-type 70]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from bench.bench_office_api import copies, make_bases
from bench.harness import cpu_seconds, pids_matching, rss_kib


def _soffice_cpu_rss() -> tuple[float, int]:
    """CPU seconds and RSS (MB) of this process's listener's soffice.bin."""
    pids = pids_matching(rf"soffice\.bin.*lo-profile-{os.getpid()}")
    if not pids:
        raise RuntimeError("no soffice.bin of this process found")
    return cpu_seconds(pids), rss_kib(pids) >> 10


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-type", type=int, default=70)
    args = ap.parse_args()
    os.environ["APPLIANCE_OFFICE_RESTART_AFTER"] = "1000000"
    from appliance.engines.office import OfficeEngine, OfficeOptions

    root = Path(tempfile.mkdtemp(prefix="bench-listener-"))
    bases = make_bases(root)
    engine = OfficeEngine()
    start = time.perf_counter()
    first = copies(bases["docx"], root / "first", "first", 1)[0]
    engine.convert(first, root / "first.pdf", "docx", "pdf", OfficeOptions(), lambda f: None)
    cpu, rss = _soffice_cpu_rss()
    print(
        f"start + 1 docx: {time.perf_counter() - start:.2f} s wall,"
        f" soffice {cpu:.2f} s CPU, {rss} MB"
    )
    done = 1
    try:
        for fmt in ("docx", "xlsx", "pptx"):
            for i, path in enumerate(copies(bases[fmt], root / fmt, fmt, args.per_type)):
                engine.convert(
                    path, root / fmt / f"{i}.pdf", fmt, "pdf", OfficeOptions(), lambda f: None
                )
            done += args.per_type
            now, rss = _soffice_cpu_rss()
            print(
                f"after {done} documents (+{args.per_type} {fmt}): soffice {rss} MB,"
                f" {(now - cpu) / args.per_type * 1000:.0f} ms CPU per {fmt}"
            )
            cpu = now
    finally:
        assert engine._listener is not None
        engine._listener.stop()


if __name__ == "__main__":
    main()
