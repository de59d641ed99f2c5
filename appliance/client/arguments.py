"""The client's command line (argparse only: the ``appliance`` command builds it at every start,
so the client's libraries load only when a client command runs, ``commands.run``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from appliance.client import config

NAMES = ("convert", "jobs", "formats", "login")


def add_parsers(sub: Any) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--server", metavar="URL", help=f"the appliance (${config.SERVER_VAR})")
    common.add_argument("--json", action="store_true", help="print the result as JSON")
    conv = sub.add_parser("convert", parents=[common], help="convert files on an appliance")
    conv.add_argument("files", nargs="+", type=Path, metavar="FILE")
    conv.add_argument("--to", required=True, metavar="FMT", help="the output format")
    conv.add_argument("-o", "--output-dir", type=Path, default=Path("."), metavar="DIR")
    conv.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a convert option (repeatable); VALUE is read as JSON when it parses",
    )
    conv.add_argument("-j", "--parallel", type=int, default=4, metavar="N")
    conv.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    conv.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    jobs = sub.add_parser("jobs", help="your jobs on an appliance").add_subparsers(
        dest="action", required=True
    )
    listing = jobs.add_parser("list", parents=[common], help="the newest jobs")
    listing.add_argument("--status", choices=("waiting", "processing", "finished", "error"))
    listing.add_argument("--limit", type=int, default=20)
    jobs.add_parser("show", parents=[common], help="one job").add_argument("id")
    wait = jobs.add_parser("wait", parents=[common], help="wait until a job ends")
    wait.add_argument("id")
    wait.add_argument("--timeout", type=float, default=3600, metavar="SECONDS")
    jobs.add_parser("delete", parents=[common], help="delete jobs").add_argument("ids", nargs="+")
    fmts = sub.add_parser("formats", parents=[common], help="what the appliance converts")
    fmts.add_argument("--from", dest="input_format", metavar="FMT")
    fmts.add_argument("--to", dest="output_format", metavar="FMT")
    login = sub.add_parser("login", parents=[common], help="store the server and key")
    login.add_argument("--key", help="the API key (default: read from stdin)")
