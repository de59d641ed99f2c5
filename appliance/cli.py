"""The ``appliance`` command: wiring only.

appliance up                    everything on one host, in the foreground (Ctrl-C stops)
appliance migrate               apply database migrations (safe to run twice, or in parallel)
appliance keys create --user E  print a new API key for user E (created if new)
appliance api                   the HTTP API under granian
appliance worker -Q QUEUE       a Dramatiq worker for one or more queue classes
appliance settings              the configuration reference
appliance doctor                which engines can run here, and whether the sandbox works
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from appliance.settings import Settings, SettingsError
from appliance.supervisor import api_command, api_group, worker_command, worker_group


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="appliance", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="run the whole appliance on this host")
    sub.add_parser("migrate", help="apply database migrations")
    keys = sub.add_parser("keys", help="manage API keys").add_subparsers(
        dest="action", required=True
    )
    create = keys.add_parser("create", help="create a key")
    create.add_argument("--user", required=True, metavar="EMAIL")
    create.add_argument(
        "--scopes",
        default="task.read,task.write",
        help="comma-separated scopes (default: task.read,task.write)",
    )
    sub.add_parser("api", help="serve the HTTP API with granian")
    worker = sub.add_parser("worker", help="run a Dramatiq worker")
    worker.add_argument("-Q", "--queues", nargs="+", default=["light", "office", "media"])
    worker.add_argument("-p", "--processes", type=int, default=None)
    worker.add_argument("-t", "--threads", type=int, default=None)
    sub.add_parser("settings", help="print every setting with its default")
    sub.add_parser("doctor", help="report which engines can run here and why not")
    args = parser.parse_args(argv)

    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"appliance: configuration error: {exc}", file=sys.stderr)
        return 2
    import psycopg

    try:
        return int(COMMANDS[args.command](settings, args) or 0)
    except psycopg.OperationalError as exc:
        print(
            f"appliance: cannot reach PostgreSQL at {settings.effective_database_url}: "
            f"{exc}\n(is `appliance up` running, or APPLIANCE_DATABASE_URL set?)",
            file=sys.stderr,
        )
        return 1


def _migrate(settings: Settings, _: argparse.Namespace) -> int:
    from appliance.db.migrate import migrate

    applied = migrate(settings.effective_database_url)
    print(f"applied: {', '.join(applied)}" if applied else "database is up to date")
    return 0


def _keys(settings: Settings, args: argparse.Namespace) -> int:
    import psycopg
    from psycopg.rows import dict_row

    from appliance.security.keys import create_key

    with psycopg.connect(
        settings.effective_database_url, autocommit=True, row_factory=dict_row
    ) as conn:
        try:
            print(create_key(conn, args.user, scopes=args.scopes.split(",")))
        except ValueError as exc:
            print(f"appliance: {exc}", file=sys.stderr)
            return 2
    return 0


def _api(settings: Settings, _: argparse.Namespace) -> int:
    from appliance.metrics import process

    process.prepare(settings, api_group(), os.environ)
    os.execvp(sys.executable, api_command(settings))


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    from appliance.metrics import process

    process.prepare(settings, worker_group(args.queues), os.environ)
    os.execvp(sys.executable, worker_command(settings, args.queues, args.processes, args.threads))


def _up(settings: Settings, _: argparse.Namespace) -> int:
    from appliance.supervisor import run_single_host

    return run_single_host(settings)


def _settings(_: Settings, __: argparse.Namespace) -> int:
    for var, default, text in Settings.reference():
        print(f"{var} (default {default})\n    {text}")
    return 0


def _doctor(settings: Settings, _: argparse.Namespace) -> int:
    from appliance.engines.doctor import diagnose
    from appliance.engines.enabled import enabled_engines

    checks = diagnose(settings, enabled_engines())
    for check in checks:
        print(f"{'ok  ' if check.ok else 'FAIL'}  {check.name:10} {check.detail}")
    return 0 if all(c.ok for c in checks) else 1


def asgi() -> Any:
    """The API's ASGI app, as granian loads it (``--factory appliance.cli:asgi``): the
    HTTP side with the queue side's dispatcher."""
    from appliance.api.app import create_app
    from appliance.jobs.broker import dramatiq_dispatcher

    return create_app(dramatiq_dispatcher)


COMMANDS = {
    "up": _up,
    "migrate": _migrate,
    "keys": _keys,
    "api": _api,
    "worker": _worker,
    "settings": _settings,
    "doctor": _doctor,
}

if __name__ == "__main__":
    sys.exit(main())
