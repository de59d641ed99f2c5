"""The audit log's append rate: writers appending at once (each append its own transaction,
into the pending records: no append waits for another), against a Postgres with durable
commits; the rate at which ``seal`` chains them; and the time `appliance audit verify` takes
per record.

    .venv/bin/python -m bench.bench_audit [--writers 1 4 16] [--seconds 10]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

import psycopg
from psycopg.rows import dict_row

from appliance import local_services
from appliance.db.migrate import migrate
from appliance.security import audit

KEY = b"bench" * 10


def appends(url: str, writers: int, seconds: float) -> tuple[float, float]:
    """(appends/s, p99 ms) of ``writers`` connections appending for ``seconds``."""
    latencies: list[list[float]] = [[] for _ in range(writers)]
    stop = time.monotonic() + seconds

    def write(n: int) -> None:
        with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
            while time.monotonic() < stop:
                start = time.perf_counter()
                audit.record(conn, "job.created", None, f"job:{n}", {"tasks": 3, "tag": None})
                latencies[n].append(time.perf_counter() - start)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    begin = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - begin
    every = sorted(x for per in latencies for x in per)
    return len(every) / elapsed, every[int(len(every) * 0.99)] * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--writers", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--seconds", type=float, default=10)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="audit-bench-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)
        pg = local_services.start_postgres(root / "pg", local_services.free_port(), fast=False)
        try:
            migrate(pg.url)
            print(f"{'writers':>7} {'appends/s':>10} {'p99 ms':>7}")
            for writers in args.writers:
                rate, p99 = appends(pg.url, writers, args.seconds)
                print(f"{writers:7} {rate:10.0f} {p99:7.1f}")
            with psycopg.connect(pg.url, autocommit=True, row_factory=dict_row) as conn:
                start = time.perf_counter()
                sealed = audit.seal(conn)
                t = time.perf_counter() - start
                print(f"seal: {sealed} records in {t:.2f} s ({sealed / t:.0f} records/s)")
                times = []
                for _ in range(3):
                    start = time.perf_counter()
                    report = audit.verify(conn, KEY)
                    times.append(time.perf_counter() - start)
                assert report.ok, report.problems
                t = statistics.median(times)
                print(
                    f"verify: {report.records} records in {t:.2f} s"
                    f" ({report.records / t:.0f} records/s)"
                )
        finally:
            pg.stop()


if __name__ == "__main__":
    main()
