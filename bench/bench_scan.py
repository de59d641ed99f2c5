"""Virus scanning's cost: (a) clamd's scan time per MB of a few kinds of file, streamed over
INSTREAM as the workers do; (b) image conversions per minute through the API with scanning on
÷ off (bench_convert's job: upload -> PNG to WebP -> export/url, photo-like 1000x1000 inputs),
rounds interleaved with the order alternating.

No signatures can be downloaded here: clamd loads a database of two test signatures (EICAR's
hash and one body pattern), so (a) measures clamd's file parsing and streaming, not matching
against Debian's full signature set (millions of signatures, about 1 GB resident): expect
production scans to cost more per MB.

    .venv/bin/python -m bench.bench_scan [--mb 20] [--images 40] [--rounds 3] [--clients 8]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from appliance.scanning import daemon
from appliance.scanning.clamd import Clamd
from bench.bench_convert import make_inputs, through_api
from bench.harness import cpu_seconds

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
MARKER = b"APPLIANCE-BENCH-MARKER-51c2"


@contextmanager
def clamd(root: Path) -> Iterator[tuple[str, int]]:
    """A clamd on the bench's signatures: its address and pid."""
    db = root / "db"
    db.mkdir(parents=True)
    (db / "bench.hsb").write_text(
        f"{hashlib.sha256(EICAR).hexdigest()}:{len(EICAR)}:Bench.EICAR:73\n"
    )
    (db / "bench.ndb").write_text(f"Bench.Marker:0:*:{MARKER.hex()}:73\n")
    address = str(root / "clamd.sock")
    config = daemon.write_config(root, address, db, 200 * 1024 * 1024)
    proc = subprocess.Popen(daemon.command(config), stdout=subprocess.DEVNULL)
    try:
        daemon.wait_ready(proc, address, 30)
        yield address, proc.pid
    finally:
        proc.kill()
        proc.wait()


def samples(root: Path, mb: int) -> dict[str, Path]:
    """Files of about ``mb`` MB each: random bytes, a PNG photo, plain text, a ZIP of the PNG."""
    out = {}
    out["random bytes"] = root / "random.bin"
    out["random bytes"].write_bytes(os.urandom(mb * 1024 * 1024))
    side = int((mb * 1024 * 1024 / 3) ** 0.5)
    photo = make_inputs(root, 1, side)[0]
    out["PNG photo"] = photo
    text = root / "text.txt"
    text.write_text(" ".join(f"word{i}" for i in range(mb * 1024 * 1024 // 10)))
    out["plain text"] = text
    zipped = root / "photos.zip"
    subprocess.run(["python3", "-m", "zipfile", "-c", str(zipped), str(photo)], check=True)
    out["ZIP of a PNG"] = zipped
    return out


def scan_cost(address: str, files: dict[str, Path], repeat: int = 5) -> None:
    client = Clamd(address)
    print(f"{'file':14} {'MB':>6} {'ms/MB':>7} {'MB/s':>7}")
    for name, path in files.items():
        size = path.stat().st_size / 1e6
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            assert client.scan_file(path).clean
            times.append(time.perf_counter() - start)
        t = statistics.median(times)
        print(f"{name:14} {size:6.1f} {t * 1000 / size:7.1f} {size / t:7.1f}")


def on_off(root: Path, clamd_at: tuple[str, int], images: int, rounds: int, clients: int) -> None:
    """Conversions/min on and off, and CPU ms per job (the API's, workers', engines', clamd's,
    Postgres's...): on a shared machine the CPU per job is the steadier figure, and when the
    run is CPU-bound its ratio predicts the throughput's."""
    address, clamd_pid = clamd_at
    on_env = {"APPLIANCE_VIRUS_SCAN": "clamd", "APPLIANCE_CLAMD_SOCKET": address}
    rates: dict[str, list[float]] = {"on": [], "off": []}
    cpus: dict[str, list[dict[str, float]]] = {"on": [], "off": []}
    for r in range(rounds):
        (root / f"r{r}").mkdir()
        paths = make_inputs(root / f"r{r}", images, 1000)
        for side in ("on", "off") if r % 2 == 0 else ("off", "on"):
            before = cpu_seconds([clamd_pid])
            rate, cpu = through_api(paths, clients, on_env if side == "on" else {})
            cpu["clamd"] = (cpu_seconds([clamd_pid]) - before) / (len(paths) - 1) * 1000
            rates[side].append(rate)
            cpus[side].append(cpu)
            print(
                f"round {r + 1} scanning {side}: {rate:.0f} conversions/min,"
                f" {sum(cpu.values()):.0f} CPU ms/job"
            )
    on, off = statistics.median(rates["on"]), statistics.median(rates["off"])
    paired = statistics.median(a / b for a, b in zip(rates["on"], rates["off"], strict=True))
    print(
        f"conversions/min scanning on {on:.0f}, off {off:.0f}: on / off {on / off:.3f}"
        f" (median of paired rounds {paired:.3f})"
    )
    print(f"CPU ms per job (median of rounds)   {'on':>7} {'off':>7}")
    total = {"on": 0.0, "off": 0.0}
    for part in cpus["on"][0]:
        row = {side: statistics.median(c.get(part, 0.0) for c in cpus[side]) for side in total}
        total = {side: total[side] + row[side] for side in total}
        print(f"  {part:32} {row['on']:7.1f} {row['off']:7.1f}")
    print(
        f"  {'total':32} {total['on']:7.1f} {total['off']:7.1f}"
        f"  -> CPU-bound on / off {total['off'] / total['on']:.3f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=20)
    ap.add_argument("--images", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clients", type=int, default=8)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="scan-bench-") as tmp, clamd(Path(tmp)) as at:
        root = Path(tmp)
        (root / "files").mkdir()
        scan_cost(at[0], samples(root / "files", args.mb))
        on_off(root, at, args.images, args.rounds, args.clients)


if __name__ == "__main__":
    main()
