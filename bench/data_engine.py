"""Data engine throughput: a 100 000-row csv (6 columns, ~5 MB) to each data format and back
to csv, through the warm sandboxed helper. Prints seconds and rows/s per conversion.

    .venv/bin/python bench/data_engine.py [ROWS]
"""

from __future__ import annotations

import csv
import sys
import tempfile
import time
from pathlib import Path

from appliance.engines.data import FORMATS, DataEngine, DataOptions
from appliance.engines.sandbox import HelperPool, Limits, SandboxedEngine


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        src = root / "table.csv"
        with open(src, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["id", "name", "price", "qty", "ok", "note"])
            for i in range(rows):
                w.writerow([i, f"item {i}", i * 0.25, i % 97, "true" if i % 2 else "false", ""])
        pool = HelperPool(root / "sandbox", Limits(timeout_seconds=600))
        engine = SandboxedEngine(DataEngine(), pool)
        warm = root / "warm.json"
        engine.convert(src, warm, "csv", "json", DataOptions(), lambda f: None)  # load libraries
        print(f"{rows} rows, csv {src.stat().st_size / 1e6:.1f} MB")
        for fmt in FORMATS:
            if fmt == "csv":
                continue
            out, back = root / f"t.{fmt}", root / f"back-{fmt}.csv"
            t0 = time.perf_counter()
            engine.convert(src, out, "csv", fmt, DataOptions(), lambda f: None)
            t1 = time.perf_counter()
            engine.convert(out, back, fmt, "csv", DataOptions(), lambda f: None)
            t2 = time.perf_counter()
            print(
                f"csv -> {fmt:8} {t1 - t0:6.2f} s ({rows / (t1 - t0):8.0f} rows/s)   "
                f"{fmt:8} -> csv {t2 - t1:6.2f} s ({rows / (t2 - t1):8.0f} rows/s)"
            )
        pool.close()


if __name__ == "__main__":
    main()
