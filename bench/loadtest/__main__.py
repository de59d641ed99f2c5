"""``python -m bench.loadtest`` (``scripts/loadtest``): run the load test headless and write
Locust's CSV and HTML report, the sampled queue depth and PNG plots into ``--out``."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import uuid
from pathlib import Path

from bench.loadtest import report

LOCUSTFILE = Path(__file__).with_name("locustfile.py")


def make_keys(n: int, out: Path) -> Path:
    """``n`` users (``loadtest-<run>-<i>@loadtest.invalid``), a key each, into ``out`` (0600)."""
    from appliance.security import accounts
    from appliance.settings import Settings

    settings = Settings.from_env()
    run = uuid.uuid4().hex[:8]
    keys = [
        accounts.create_key(
            settings, f"loadtest-{run}-{i}@loadtest.invalid", ["task.read", "task.write"]
        )
        for i in range(n)
    ]
    path = out / "keys.txt"
    path.touch(mode=0o600)
    path.write_text("\n".join(keys) + "\n")
    return path


def _mix(text: str) -> str:
    kinds = [k for k in text.split(",") if k]
    unknown = sorted(set(kinds) - {"image", "table", "text"})
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(f"kinds are image, table and text, not {text!r}")
    return ",".join(kinds)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="loadtest", description=__doc__)
    ap.add_argument("--url", required=True, help="the appliance's base URL")
    ap.add_argument("--users", type=int, default=20, help="simulated clients (default 20)")
    ap.add_argument("--spawn-rate", type=float, default=5, help="clients started per second")
    ap.add_argument("--run-time", default="1m", help="how long, e.g. 30s, 5m (default 1m)")
    keys = ap.add_mutually_exclusive_group(required=True)
    keys.add_argument("--keys", type=Path, help="a file of API keys, one per line")
    keys.add_argument("--make-keys", type=int, metavar="N", help="make N users' keys here")
    ap.add_argument("--metrics-url", help="the API's /metrics, sampled for queue depth")
    ap.add_argument(
        "--unique-files",
        action="store_true",
        help="every job's file unlike any other (no stored file or cached result shared)",
    )
    ap.add_argument(
        "--mix",
        type=_mix,
        default="image,table,text",
        help="the kinds of file the jobs bring, comma-separated: image (png -> webp), table"
        " (csv -> json), text (md -> html); default all three",
    )
    ap.add_argument(
        "--insecure",
        action="store_true",
        help="do not check the appliance's TLS certificate (a test fleet's self-signed one)",
    )
    ap.add_argument("--out", type=Path, default=Path("bench/out/loadtest"))
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    key_file = args.keys or make_keys(args.make_keys, args.out)
    prefix, queues = args.out / "locust", args.out / "queues.csv"
    env = {**os.environ, "LOADTEST_KEYS": str(key_file), "LOADTEST_QUEUE_CSV": str(queues)}
    if args.metrics_url:
        env["LOADTEST_METRICS_URL"] = args.metrics_url
    if args.unique_files:
        env["LOADTEST_UNIQUE"] = "1"
    env["LOADTEST_MIX"] = args.mix
    if args.insecure:
        env["LOADTEST_INSECURE"] = "1"
    ran = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
         "--host", args.url, "-u", str(args.users), "-r", str(args.spawn_rate),
         "-t", args.run_time, "--csv", str(prefix), "--csv-full-history",
         "--html", str(args.out / "report.html"), "--only-summary", "--stop-timeout", "30",
         "--exit-code-on-error", "0"],
        env=env,
    )  # fmt: skip
    if ran.returncode != 0:
        print(f"loadtest: locust exited with {ran.returncode}", file=sys.stderr)
        return ran.returncode
    made = report.plots(prefix, queues, args.out)
    print(report.summary(prefix).line())
    print("wrote", ", ".join(str(p) for p in [prefix.with_name("report.html"), *made]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
