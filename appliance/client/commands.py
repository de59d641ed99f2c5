"""The client's commands and their exit codes, which scripts may rely on:

0  done (every file converted; the job finished)
1  a conversion failed: a job ended in error, or an output could not be written
2  a usage error: a bad flag, a missing file, an unreadable config file
3  the API refused a request (no or a bad key, invalid data, a quota, 4xx)
4  the API could not be reached or failed (5xx)
5  ``jobs wait``: the job had not ended when ``--timeout`` passed
130  interrupted by Ctrl-C: the jobs this run made were cancelled

Messages go to stderr as ``appliance: CODE: message``; ``--json`` writes the result to stdout.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import threading
import time
from typing import Any

from rich.console import Console

from appliance.client import config
from appliance.client.api import ApiClient, ApiError
from appliance.client.convert import ENDED, Converter, FileResult, Request, convert_all, failure

OK, FAILED, USAGE, REFUSED, UNREACHABLE, TIMED_OUT, INTERRUPTED = 0, 1, 2, 3, 4, 5, 130


def run(args: argparse.Namespace) -> int:
    try:
        cfg = config.load(args.server)
    except config.ConfigError as exc:
        return told("CONFIG", str(exc), USAGE)
    try:
        return COMMANDS[args.command](cfg, args)
    except ApiError as exc:
        return told(exc.code, exc.message, exit_code(exc))
    except KeyboardInterrupt:
        return told("INTERRUPTED", "interrupted", INTERRUPTED)


def exit_code(exc: ApiError) -> int:
    if exc.code == "TIMEOUT":
        return TIMED_OUT
    if exc.status == 0 or exc.status >= 500:
        return UNREACHABLE
    return REFUSED


def told(code: str, message: str, status: int) -> int:
    print(f"appliance: {code}: {message}", file=sys.stderr)
    return status


def emit(args: argparse.Namespace, value: Any, text: str) -> None:
    print(json.dumps(value, indent=2) if args.json else text)


def client(cfg: config.ClientConfig) -> ApiClient:
    if not cfg.key:
        raise ApiError(
            "NO_KEY",
            f"no API key: run `appliance login` or set ${config.KEY_VAR}",
            401,
        )
    return ApiClient(cfg.server, cfg.key)


def option_pairs(pairs: list[str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--option {pair!r} is not KEY=VALUE")
        try:
            options[key] = json.loads(raw)
        except ValueError:
            options[key] = raw
    return options


def _convert(cfg: config.ClientConfig, args: argparse.Namespace) -> int:
    try:
        options = option_pairs(args.option)
    except ValueError as exc:
        return told("USAGE", str(exc), USAGE)
    missing = [str(p) for p in args.files if not p.is_file()]
    if missing:
        return told("NO_SUCH_FILE", f"not a file: {', '.join(missing)}", USAGE)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    request = Request(args.to, options, args.output_dir, args.overwrite)
    stop = threading.Event()
    with client(cfg) as api:
        converter = Converter(api, request, stop)
        console = Console(stderr=True)
        try:
            results = convert_all(
                converter, args.files, max(1, args.parallel), console, args.quiet or args.json
            )
        except KeyboardInterrupt:
            stop.set()
            n = converter.cancel_all()
            return told("INTERRUPTED", f"interrupted: {n} job(s) cancelled", INTERRUPTED)
    return report(args, results)


def report(args: argparse.Namespace, results: list[FileResult]) -> int:
    for r in results:
        if r.status != "finished":
            print(f"appliance: {r.input}: {r.error_code}: {r.error_message}", file=sys.stderr)
        elif not args.json:
            print(f"{r.input} -> {', '.join(r.outputs)}")
    if args.json:
        print(json.dumps([vars(r) for r in results], indent=2))
    if all(r.status == "finished" for r in results):
        return OK
    failed = [r for r in results if r.status != "finished"]
    if any(r.error_code == "UNREACHABLE" or r.http_status >= 500 for r in failed):
        return UNREACHABLE
    if any(400 <= r.http_status < 500 for r in failed):
        return REFUSED
    return FAILED


def _jobs(cfg: config.ClientConfig, args: argparse.Namespace) -> int:
    with client(cfg) as api:
        if args.action == "list":
            rows = api.jobs(args.status, max(1, min(args.limit, 100)))
            emit(args, rows, "\n".join(job_line(j) for j in rows))
        elif args.action == "show":
            job = api.job(args.id)
            emit(args, job, job_text(job))
        elif args.action == "wait":
            job = wait_job(api, args.id, args.timeout)
            emit(args, job, job_text(job))
            return OK if job["status"] == "finished" else FAILED
        else:
            for job_id in args.ids:
                api.delete_job(job_id)
            emit(args, {"deleted": args.ids}, f"deleted {len(args.ids)} job(s)")
    return OK


def wait_job(api: ApiClient, job_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = api.job(job_id)
        if job["status"] in ENDED:
            return job
        if time.monotonic() > deadline:
            raise ApiError("TIMEOUT", f"job {job_id} has not ended after {timeout:g} s", 408)
        time.sleep(0.5)


def job_line(job: dict[str, Any]) -> str:
    return f"{job['id']}\t{job['status']}\t{job['created_at']}\t{job.get('tag') or '-'}"


def job_text(job: dict[str, Any]) -> str:
    lines = [job_line(job)]
    for t in job.get("tasks", []):
        words = f"  {t['name']}\t{t['operation']}\t{t['status']}\t{t.get('percent', 0)}%"
        if t["status"] == "error":
            words += f"\t{t.get('code')}: {t.get('message')}"
        for f in (t.get("result") or {}).get("files", []) if t["operation"] == "export/url" else []:
            words += f"\n    {f['filename']}\t{f.get('url')}"
        lines.append(words)
    if job["status"] == "error":
        lines.append("failed: {}: {}".format(*failure(job)))
    return "\n".join(lines)


def _formats(cfg: config.ClientConfig, args: argparse.Namespace) -> int:
    # Public (no key needed), as on CloudConvert.
    with ApiClient(cfg.server, cfg.key) as api:
        rows = api.formats(args.input_format, args.output_format)
    text = "\n".join(f"{r['input_format']}\t{r['output_format']}\t{r['engine']}" for r in rows)
    emit(args, rows, text)
    return OK


def _login(cfg: config.ClientConfig, args: argparse.Namespace) -> int:
    key = args.key or read_key()
    if not key:
        return told("NO_KEY", "no key given", USAGE)
    with ApiClient(cfg.server, key) as api:
        api.jobs(None, 1)  # the key works (task.read) before it is stored
    path = config.save(config.ClientConfig(server=cfg.server, key=key))
    emit(args, {"server": cfg.server, "config": str(path)}, f"logged in to {cfg.server} ({path})")
    return OK


def read_key() -> str:
    if sys.stdin.isatty():
        return getpass.getpass("API key: ").strip()
    return sys.stdin.readline().strip()


COMMANDS = {"convert": _convert, "jobs": _jobs, "formats": _formats, "login": _login}
