"""The ``appliance`` command: wiring only.

appliance up                    everything on one host, in the foreground (Ctrl-C stops)
appliance migrate               apply database migrations (safe to run twice, or in parallel)
appliance users create|list|disable|enable|delete
                                the users (disable and delete take effect at once)
appliance users invite EMAIL    print a link where EMAIL chooses a web UI password
                                (--operator: also the operator page)
appliance users export EMAIL    everything held about the user, in one zip archive (--out)
appliance users erase EMAIL     the user and all their data, their data key destroyed
appliance users quota EMAIL     a user's quotas: --minutes-per-day, --minutes-per-month,
                                --stored-bytes (0: unlimited, -1: the setting's default)
appliance usage                 usage per user and UTC day for billing: --user EMAIL,
                                --from DAY, --to DAY (this month), --format csv|json
appliance keys create --user E  print a new API key for user E (created if new);
                                --scopes, --name, --expires TIME
appliance keys list|revoke      the keys (a revoked key stops working at once)
appliance audit verify          check the audit log's hash chain: any edited, deleted or
                                reordered record is named (exit status 1); --noted SEQ:HASH
                                (a head it printed before) must still be in the chain
appliance audit show            audit records, newest first: --user EMAIL, --since TIME
                                (ISO time or 24h, 7d), --event NAME, --limit N
appliance audit prune           apply APPLIANCE_AUDIT_RETENTION_DAYS now (the workers' reconciler
                                does hourly)
appliance master-key add|rewrap|status
                                rotate the master key: add a new one (key file), re-wrap
                                the data keys under it, see which keys still wrap some
appliance api                   the HTTP API under granian
appliance worker -Q QUEUE       a Dramatiq worker for one or more queue classes
appliance settings              the configuration reference
appliance doctor                which engines can run here, and whether the sandbox works

The client, for any appliance over its public API (``appliance.client``):
appliance login [--server URL]  store the server and an API key (or $APPLIANCE_API_KEY)
appliance convert FILE... --to FMT [-o DIR] [--option KEY=VALUE ...]
                                convert files, several at once, with progress bars
appliance jobs list|show|wait|delete
                                your jobs
appliance formats [--from FMT] [--to FMT]
                                what the appliance converts
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from appliance.client import arguments as client_arguments
from appliance.settings import Settings, SettingsError
from appliance.supervisor import (
    api_command,
    api_group,
    api_metrics_command,
    worker_command,
    worker_group,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="appliance", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="run the whole appliance on this host")
    sub.add_parser("migrate", help="apply database migrations")
    _account_parsers(sub)
    _audit_parsers(sub)
    sub.add_parser("api", help="serve the HTTP API with granian")
    worker = sub.add_parser("worker", help="run a Dramatiq worker")
    worker.add_argument("-Q", "--queues", nargs="+", default=["light", "office", "media"])
    worker.add_argument("-p", "--processes", type=int, default=None)
    worker.add_argument("-t", "--threads", type=int, default=None)
    sub.add_parser("settings", help="print every setting with its default")
    sub.add_parser("doctor", help="report which engines can run here and why not")
    client_arguments.add_parsers(sub)
    args = parser.parse_args(argv)
    if args.command in client_arguments.NAMES:  # needs none of the server's settings
        from appliance.client.commands import run

        return run(args)

    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"appliance: configuration error: {exc}", file=sys.stderr)
        return 2
    import psycopg

    from appliance.security.accounts import AccountError
    from appliance.security.envelope import MasterKeyError

    try:
        status = int(COMMANDS[args.command](settings, args) or 0)
        if status == 0 and _changes(args):
            _audit_command(settings, argv if argv is not None else sys.argv[1:])
        return status
    except (AccountError, MasterKeyError) as exc:
        print(f"appliance: {exc}", file=sys.stderr)
        return 2
    except psycopg.OperationalError as exc:
        print(
            f"appliance: cannot reach PostgreSQL at {settings.effective_database_url}: "
            f"{exc}\n(is `appliance up` running, or APPLIANCE_DATABASE_URL set?)",
            file=sys.stderr,
        )
        return 1


def _changes(args: argparse.Namespace) -> bool:
    """Whether the command changed something (audited as an operator command)."""
    if args.command in ("migrate",):
        return True
    action = getattr(args, "action", None)
    reads = ("list", "show", "verify", "export")  # an export is audited as user.exported
    return args.command in ("users", "keys", "audit") and action not in reads


def _audit_command(settings: Settings, argv: list[str]) -> None:
    from appliance.security import accounts, audit

    with accounts.connect(settings) as conn:
        details = audit.command_details(conn, argv)  # e-mails replaced by the users' ids
        audit.record(conn, "operator.command", None, "cli", details, actor=audit.operator())


def _audit_parsers(sub: Any) -> None:
    actions = sub.add_parser("audit", help="the audit log").add_subparsers(
        dest="action", required=True
    )
    verify = actions.add_parser("verify", help="check the hash chain (exit status 1 if broken)")
    verify.add_argument(
        "--noted",
        metavar="SEQ:HASH",
        type=_noted,
        help="a head an earlier verify printed, kept elsewhere: it must still be in the chain",
    )
    show = actions.add_parser("show", help="records, newest first")
    show.add_argument("--user", metavar="EMAIL", help="one user (an erased one: by id)")
    show.add_argument("--since", metavar="TIME", type=_since, help="ISO time, or 24h, 7d, 30m")
    show.add_argument("--event", metavar="NAME", help="an event (key.created) or family (key)")
    show.add_argument("--limit", type=int, default=100, metavar="N")
    actions.add_parser("prune", help="apply the retention now")


def _noted(text: str) -> tuple[int, str]:
    seq, _, hash_ = text.partition(":")
    if not seq.isdigit() or len(hash_) != 64:
        raise argparse.ArgumentTypeError(f"{text!r} is not SEQ:HASH (as verify prints it)")
    return int(seq), hash_


def _since(text: str) -> datetime:
    units = {"m": 60, "h": 3600, "d": 86400}
    if text[-1:] in units and text[:-1].isdigit():
        return datetime.now(UTC) - timedelta(seconds=int(text[:-1]) * units[text[-1]])
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is no ISO time nor 30m, 24h, 7d") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _audit(settings: Settings, args: argparse.Namespace) -> int:
    from appliance.security import accounts, audit

    with accounts.connect(settings) as conn:
        if args.action == "verify":
            report = audit.verify(conn, settings.signing_key(), args.noted)
            for problem in report.problems:
                print(f"BROKEN: {problem}")
            kept = f"records {report.first}-{report.last}" if report.records else "no records"
            anchor = f", pruned through {report.anchored}" if report.anchored else ""
            verdict = "intact" if report.ok else "BROKEN"
            # the head, to note elsewhere and pass as --noted later
            head = f"{report.last or report.anchored or 0}:{report.head}"
            print(f"audit log {verdict}: {kept}{anchor}; head {head}")
            return 0 if report.ok else 1
        if args.action == "prune":
            now = datetime.now(UTC)
            gone = audit.prune(conn, settings.signing_key(), settings.audit_retention_days, now)
            print(f"pruned {gone} records")
            return 0
        try:
            rows = audit.show(conn, args.user, args.since, args.event, args.limit)
        except LookupError as exc:
            raise accounts.AccountError(str(exc)) from None
    columns = ("seq", "at", "event", "email", "user_id", "actor", "subject", "details")
    _table(rows, columns)
    return 0


def _migrate(settings: Settings, _: argparse.Namespace) -> int:
    from appliance.db.migrate import migrate

    applied = migrate(settings.effective_database_url)
    print(f"applied: {', '.join(applied)}" if applied else "database is up to date")
    return 0


def _account_parsers(sub: Any) -> None:
    from appliance.security.keys import SCOPES

    users = sub.add_parser("users", help="manage users").add_subparsers(
        dest="action", required=True
    )
    users.add_parser("create", help="create a user").add_argument("email")
    users.add_parser("list", help="list users")
    invite = users.add_parser("invite", help="print a link where a person sets a web password")
    invite.add_argument("email")
    invite.add_argument("--operator", action="store_true", help="also the operator page")
    for action, text in (
        ("disable", "disable a user: every key stops working at once"),
        ("enable", "enable a disabled user again"),
        ("delete", "delete a user with their keys, jobs and files"),
        ("erase", "erase a user and all their data now (GDPR); their data key is destroyed"),
    ):
        users.add_parser(action, help=text).add_argument("email")
    export = users.add_parser("export", help="everything held about a user, as a zip archive")
    export.add_argument("email")
    export.add_argument("--out", metavar="PATH", help="archive to write (default: EMAIL.zip)")
    master = sub.add_parser("master-key", help="rotate the master key").add_subparsers(
        dest="action", required=True
    )
    for action, text in (
        ("add", "add a new master key to the key file; it wraps new data keys from now on"),
        ("rewrap", "wrap every data key with the current master key (objects untouched)"),
        ("status", "the master keys configured, and how many data keys each wraps"),
    ):
        master.add_parser(action, help=text)
    quota = users.add_parser("quota", help="set a user's quotas (0: unlimited, -1: default)")
    quota.add_argument("email")
    for flag in ("--minutes-per-day", "--minutes-per-month", "--stored-bytes"):
        quota.add_argument(flag, type=int, metavar="N")
    usage = sub.add_parser("usage", help="export usage per user and UTC day (billing)")
    usage.add_argument("--user", metavar="EMAIL", help="one user (default: every user)")
    usage.add_argument("--from", dest="start", type=date.fromisoformat, metavar="DAY")
    usage.add_argument("--to", dest="end", type=date.fromisoformat, metavar="DAY")
    usage.add_argument("--format", choices=("csv", "json"), default="csv")
    keys = sub.add_parser("keys", help="manage API keys").add_subparsers(
        dest="action", required=True
    )
    create = keys.add_parser("create", help="create a key (printed once)")
    create.add_argument("--user", required=True, metavar="EMAIL")
    create.add_argument(
        "--scopes", default=",".join(SCOPES), help=f"comma-separated (default: {','.join(SCOPES)})"
    )
    create.add_argument("--name", help="what the key is for")
    create.add_argument(
        "--expires", metavar="TIME", help="ISO 8601 time it stops working (default: never)"
    )
    keys.add_parser("list", help="list keys").add_argument("--user", metavar="EMAIL")
    keys.add_parser("revoke", help="revoke a key: it stops working at once").add_argument("id")


def _users(settings: Settings, args: argparse.Namespace) -> int:
    from appliance.security import accounts

    if args.action == "create":
        print(accounts.create_user(settings, args.email))
    elif args.action == "invite":
        print(accounts.invite(settings, args.email, args.operator))
    elif args.action == "list":
        _table(accounts.list_users(settings), ("id", "email", "created_at", "disabled_at", "keys"))
    elif args.action == "delete":
        _told(accounts.delete_user(settings, args.email))
    elif args.action in ("erase", "export"):
        return _personal(settings, args)
    elif args.action == "quota":
        from appliance.security import usage

        quota = usage.set_quota(
            settings, args.email, args.minutes_per_day, args.minutes_per_month, args.stored_bytes
        )
        print(
            f"minutes per day {quota.minutes_per_day}, per month {quota.minutes_per_month},"
            f" stored bytes {quota.stored_bytes} (0: unlimited)"
        )
    else:
        _told(accounts.set_disabled(settings, args.email, args.action == "disable"))
    return 0


def _personal(settings: Settings, args: argparse.Namespace) -> int:
    from appliance.conversions import personal
    from appliance.storage import make_storage

    storage = make_storage(settings)
    if args.action == "erase":
        erased = personal.erase(settings, storage, args.email)
        print(f"erased user {erased.user_id}: {erased.objects_deleted} stored objects deleted")
        _told(erased.told_api)
        return 0
    out = Path(args.out or f"{args.email}.zip")
    doc = personal.export(settings, storage, args.email, out)
    print(f"{out}: {len(doc['jobs'])} jobs, {len(doc['files'])} files")
    return 0


def _master_key(settings: Settings, args: argparse.Namespace) -> int:
    from appliance.security import envelope

    print(envelope.operate(settings, args.action))
    return 0


def _usage(settings: Settings, args: argparse.Namespace) -> int:
    from appliance.security import usage

    today = datetime.now(UTC).date()
    start, end = args.start or today.replace(day=1), args.end or today
    sys.stdout.write(usage.export(settings, start, end, args.user, args.format))
    return 0


def _keys(settings: Settings, args: argparse.Namespace) -> int:
    from appliance.security import accounts

    if args.action == "create":
        expires = None
        if args.expires:
            try:
                expires = datetime.fromisoformat(args.expires)
            except ValueError:
                raise accounts.AccountError(f"--expires {args.expires!r} is no ISO time") from None
            expires = expires if expires.tzinfo else expires.replace(tzinfo=UTC)
        print(accounts.create_key(settings, args.user, args.scopes.split(","), args.name, expires))
    elif args.action == "list":
        columns = ("id", "email", "name", "prefix", "scopes", "expires_at", "revoked_at")
        _table(accounts.list_keys(settings, args.user), columns)
    else:
        _told(accounts.revoke_key(settings, args.id))
    return 0


def _table(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> None:
    """Tab-separated, a header line first (``-`` for nothing)."""
    print("\t".join(columns))
    for row in rows:
        cells = (row[c] for c in columns)
        print(
            "\t".join(
                "-" if v is None else ",".join(v) if isinstance(v, list) else str(v) for v in cells
            )
        )


def _told(announced: bool) -> None:
    if not announced:
        print(
            "appliance: done, but Redis could not be told: API processes may accept the key(s)"
            " for up to 30 s",
            file=sys.stderr,
        )


def _api(settings: Settings, _: argparse.Namespace) -> int:
    from appliance.metrics import process

    process.prepare(settings, api_group(), os.environ)
    if settings.api_metrics_port:
        # One process beside granian's workers serves their summed samples; it ends when
        # this process (granian, after the exec) does.
        subprocess.Popen(api_metrics_command(os.getpid()), stdin=subprocess.DEVNULL)
    os.execvp(sys.executable, api_command(settings))


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    from appliance.metrics import process

    process.prepare(settings, worker_group(args.queues), os.environ)
    os.execvp(sys.executable, worker_command(settings, args.queues, args.processes, args.threads))


def _up(settings: Settings, _: argparse.Namespace) -> int:
    from appliance.supervisor import run_single_host

    try:
        return run_single_host(settings)
    except RuntimeError as exc:  # a private server, the service user or the sandbox
        print(f"appliance: {exc}", file=sys.stderr)
        return 1


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
    HTTP side with the queue side's dispatcher and the web UI."""
    from appliance.api.app import create_app
    from appliance.jobs.broker import dramatiq_dispatcher
    from appliance.web.routes import web_routers

    return create_app(dramatiq_dispatcher, pages=web_routers)


COMMANDS = {
    "up": _up,
    "migrate": _migrate,
    "users": _users,
    "keys": _keys,
    "usage": _usage,
    "audit": _audit,
    "master-key": _master_key,
    "api": _api,
    "worker": _worker,
    "settings": _settings,
    "doctor": _doctor,
}

if __name__ == "__main__":
    sys.exit(main())
