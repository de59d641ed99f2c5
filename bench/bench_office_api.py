"""Office documents per minute through the full API path (upload -> convert to pdf -> export,
over HTTP, against real api + worker processes), as ratios to (a) a cold
`soffice --headless --convert-to pdf` per file and (b) one `unoserver` instance, measured side
by side in one run: each round runs the three, type after type, and the medians of the rounds
are reported.

unoserver needs the system python3 with python3-uno, so it lives in a throwaway venv made with
``--system-site-packages`` (not in the project's lock):

    /usr/bin/python3 -m venv --system-site-packages /tmp/venv-uno
    /tmp/venv-uno/bin/pip install unoserver
    .venv/bin/python -m bench.bench_office_api --unoserver-venv /tmp/venv-uno [--files 12]

Every input is a different file (the same document with a different zip comment), so the
conversion cache never answers: each API job really runs LibreOffice.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.bench_convert import JsonApi, run_job
from bench.harness import appliance, cpu_seconds, descendants

CORES = os.cpu_count() or 1
TYPES = ("docx", "xlsx", "pptx")
JOB = {
    "tasks": {
        "up": {"operation": "import/upload"},
        "c": {"operation": "convert", "input": "up", "output_format": "pdf"},
        "e": {"operation": "export/url", "input": "c"},
    }
}
UNO_DRIVER = """
import sys, time
from pathlib import Path
from unoserver.client import UnoClient
client = UnoClient(server="127.0.0.1", port=sys.argv[1])
out = Path(sys.argv[2])
start = time.perf_counter()
for name in sys.argv[3:]:
    client.convert(inpath=name, outpath=str(out / (Path(name).stem + ".pdf")))
print(time.perf_counter() - start)
"""


def _cold_soffice(src: Path, fmt: str, out: Path, profile: Path) -> None:
    subprocess.run(
        [
            "soffice",
            "--headless",
            "--norestore",
            f"-env:UserInstallation={profile.as_uri()}",
            "--convert-to",
            fmt,
            "--outdir",
            str(out),
            str(src),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )


def make_bases(root: Path) -> dict[str, Path]:
    """A 3-page docx, a 5-slide pptx (pandoc) and a 600-row xlsx (from CSV, by soffice)."""
    md = root / "doc.md"
    md.write_text(
        "# Report\n\n" + "A paragraph of ordinary text for the benchmark. " * 200 + "\n\n"
        "| item | qty | price |\n|---|---|---|\n"
        + "".join(f"| thing {i} | {i} | {i * 1.5} |\n" for i in range(40))
    )
    slides = root / "deck.md"
    slides.write_text(
        "".join(
            f"# Slide {i}\n\n- point one of slide {i}\n- point two\n- point three\n\n"
            for i in range(5)
        )
    )
    csv = root / "sheet.csv"
    csv.write_text(
        "id,name,qty,price,total,note\n"
        + "".join(
            f"{i},item {i},{i % 17},{i * 0.25:.2f},{i % 17 * i * 0.25:.2f},n{i}\n"
            for i in range(600)
        )
    )
    bases = {"docx": root / "base.docx", "pptx": root / "base.pptx", "xlsx": root / "base.xlsx"}
    subprocess.run(["pandoc", "-o", str(bases["docx"]), str(md)], check=True)
    subprocess.run(["pandoc", "-o", str(bases["pptx"]), str(slides)], check=True)
    _cold_soffice(csv, "xlsx", root, root / "profile-setup")
    (root / "sheet.xlsx").rename(bases["xlsx"])
    return bases


def copies(base: Path, root: Path, tag: str, count: int) -> list[Path]:
    """``count`` copies of ``base`` that differ in their zip comment only (distinct hashes)."""
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = root / f"{tag}-{i}{base.suffix}"
        shutil.copyfile(base, path)
        with zipfile.ZipFile(path, "a") as z:
            z.comment = f"{tag} copy {i}".encode()
        paths.append(path)
    return paths


def cold(paths: list[Path], out: Path) -> float:
    """A cold soffice per file, one per core at a time (each with its own existing profile,
    so first-run profile creation is not counted)."""
    slots = threading.local()
    counter = iter(range(1000))

    def one(path: Path) -> None:
        if not hasattr(slots, "profile"):
            slots.profile = out / f"profile-{next(counter)}"
        _cold_soffice(path, "pdf", out, slots.profile)

    with ThreadPoolExecutor(CORES) as pool:
        list(pool.map(one, paths[:CORES]))  # profiles exist before the clock starts
        start = time.perf_counter()
        list(pool.map(one, paths))
        elapsed = time.perf_counter() - start
    for path in paths:
        assert (out / f"{path.stem}.pdf").stat().st_size > 0
    return len(paths) / elapsed * 60


# unoserver 3.7 loads documents without Hidden=True, and LibreOffice 7.4 then aborts on every
# xlsx (shared/notes/engines.md). Unless --stock-unoserver, the server runs with that one
# property added to its load call, so it can be a baseline for all three types.
HIDDEN_SERVER = """
import sys, unoserver.converter as c, inspect
src = inspect.getsource(c).replace(
    'input_props = (PropertyValue(Name="ReadOnly", Value=True),)',
    'input_props = (PropertyValue(Name="ReadOnly", Value=True),'
    ' PropertyValue(Name="Hidden", Value=True))')
assert "Hidden" in src
exec(compile(src, c.__file__, "exec"), c.__dict__)
from unoserver.server import main
sys.argv[0] = "unoserver"
main()
"""


class Unoserver:
    """One unoserver instance (its own LibreOffice and profile), driven by its own client."""

    def __init__(self, venv: Path, root: Path, stock: bool) -> None:
        self.venv = venv
        self.port = _free_port()
        server = (
            [str(venv / "bin" / "unoserver")]
            if stock
            else [str(venv / "bin" / "python"), "-c", HIDDEN_SERVER]
        )
        self.proc = subprocess.Popen(
            [
                *server,
                "--port",
                str(self.port),
                "--uno-port",
                str(_free_port()),
                "--user-installation",
                str(root / "uno-profile"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(root / "unoserver.log", "wb"),  # noqa: SIM115
            start_new_session=True,
        )

    def run(self, paths: list[Path], out: Path) -> float:
        done = subprocess.run(
            [str(self.venv / "bin" / "python"), "-c", UNO_DRIVER, str(self.port), str(out)]
            + [str(p) for p in paths],
            capture_output=True,
            text=True,
            timeout=900,
        )
        if done.returncode != 0:
            raise RuntimeError(done.stderr[-2000:])
        for path in paths:
            assert (out / f"{path.stem}.pdf").stat().st_size > 0
        return len(paths) / float(done.stdout.split()[-1]) * 60

    def wait_ready(self, sample: Path, out: Path) -> None:
        deadline = time.monotonic() + 120
        while True:
            try:
                self.run([sample], out)
                return
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)

    def close(self) -> None:
        # unoserver starts soffice in a session of its own: kill the whole tree, by pid.
        for pid in [*reversed(descendants(self.proc.pid)), self.proc.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def through_api(api: JsonApi, paths: list[Path], clients: int) -> float:
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(lambda p: run_job(api, p, JOB), paths))
    return len(paths) / (time.perf_counter() - start) * 60


KINDS = (  # what a process's command line contains -> the part it is counted in
    ("appliance.engines.helper", "helpers (python)"),
    ("office_bridge.py", "bridges (python)"),
    ("soffice.bin", "soffice"),
    ("appliance.jobs.worker", "workers"),
    ("granian", "api"),
    ("appliance.cli api", "api"),
    ("postgres", "postgres"),
    ("redis-server", "redis"),
)


def _kind(pid: int) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return "gone"
    return next((kind for pattern, kind in KINDS if pattern in cmd), "other")


def process_tree(roots: list[int]) -> dict[int, str]:
    """Every process below ``roots`` (and the roots), by part; found again each time, as
    helpers and listeners start and restart during a run."""
    return {pid: _kind(pid) for root in roots for pid in [root, *descendants(root)]}


def cpu_snapshot(roots: list[int]) -> dict[int, tuple[str, float]]:
    return {pid: (kind, cpu_seconds([pid])) for pid, kind in process_tree(roots).items()}


def cpu_used(roots: list[int], before: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds per part since ``before`` (processes that ended meanwhile are not seen:
    a restarted listener's last moments are lost, a small undercount)."""
    used: dict[str, float] = {}
    for pid, (kind, now) in cpu_snapshot(roots).items():
        used[kind] = used.get(kind, 0.0) + now - before.get(pid, (kind, 0.0))[1]
    return used


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--unoserver-venv", type=Path, required=True)
    ap.add_argument("--files", type=int, default=12, help="files per type per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--worker-threads", type=int, default=None, help="default: the appliance's")
    ap.add_argument("--types", nargs="+", default=list(TYPES))
    ap.add_argument("--stock-unoserver", action="store_true", help="without Hidden=True")
    ap.add_argument(
        "--no-cold",
        action="store_true",
        help="skip the cold soffice baseline (80%% of the time; it does not depend on the"
        " appliance's code, so before/after comparisons can leave it out)",
    )
    args = ap.parse_args()
    rates: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-office-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)
        bases = make_bases(root)
        uno = Unoserver(args.unoserver_venv, root, args.stock_unoserver)
        with (
            contextlib.closing(uno),
            appliance(
                worker_processes=1,
                worker_threads=args.worker_threads,
                queues=("light", "office"),
                separate_workers=True,  # as `appliance up` runs them
            ) as app,
        ):
            api = JsonApi(app.url, app.key)
            (root / "warm").mkdir()
            uno.wait_ready(bases["docx"], root / "warm")
            cpu: dict[str, list[dict[str, float]]] = {}
            for fmt in args.types:  # start every helper's listener before the clock runs
                through_api(api, copies(bases[fmt], root / "warm", f"w{fmt}", 2 * CORES), 2)
            for r in range(args.rounds):
                for fmt in args.types:
                    out = root / f"r{r}-{fmt}"
                    paths = copies(bases[fmt], out / "in", f"r{r}{fmt}", args.files)
                    for side in ("cold", "unoserver", "api"):
                        (out / side).mkdir()
                    got = {"cold": float("nan") if args.no_cold else cold(paths, out / "cold")}
                    before = cpu_snapshot([uno.proc.pid])
                    got["unoserver"] = uno.run(paths, out / "unoserver")
                    uno_cpu = cpu_used([uno.proc.pid], before)
                    before = cpu_snapshot(app.root_pids)
                    got["api"] = through_api(api, paths, args.clients)
                    used = cpu_used(app.root_pids, before)
                    used["unoserver's soffice"] = uno_cpu.get("soffice", 0.0)
                    cpu.setdefault(fmt, []).append(
                        {k: v / len(paths) * 1000 for k, v in used.items()}
                    )
                    for side, rate in got.items():
                        rates.setdefault((fmt, side), []).append(rate)
                    print(
                        f"round {r + 1} {fmt}: cold {got['cold']:.0f}/min, unoserver "
                        f"{got['unoserver']:.0f}/min, API {got['api']:.0f}/min",
                        flush=True,
                    )
    print(f"\n{args.files} files per type per round, {args.rounds} rounds, {CORES} cores:")
    for fmt in args.types:
        c, u, a = (statistics.median(rates[(fmt, s)]) for s in ("cold", "unoserver", "api"))
        print(
            f"{fmt} -> pdf: cold soffice {c:.0f}/min, unoserver {u:.0f}/min, API {a:.0f}/min; "
            f"API / cold {a / c:.1f}x, API / unoserver {a / u:.2f}x"
        )
        print(
            "  CPU ms per document (median of rounds): "
            + ", ".join(
                f"{part} {statistics.median(r[part] for r in cpu[fmt]):.0f}" for part in cpu[fmt][0]
            )
        )


if __name__ == "__main__":
    main()
