"""``appliance up``: the whole appliance on one host, in the foreground.

Started as root, it first becomes the service user (``service_user.py``) and runs everything
as that user. Starts Postgres and Redis from the system binaries when none is configured
(Unix sockets and passwords under the data directory: ``embedded.py``), applies
migrations, then runs the API (granian) and one Dramatiq worker per queue class as child
processes, and clamd as one more when virus scanning is on and no clamd is configured.
Ctrl-C or SIGTERM stops the children, then the private servers, in that order. If a child
dies, everything stops with a non-zero status, so a service manager restarts it whole.
The API and worker commands built here also serve ``appliance api`` and ``appliance worker``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from appliance import embedded, local_services, logs, service_user
from appliance.engines import QUEUE_CLASSES
from appliance.scanning import daemon
from appliance.settings import Settings

log = logging.getLogger("appliance.up")
STOP_TIMEOUT = 30.0  # seconds children get to finish current requests and tasks


def run_single_host(settings: Settings) -> int:
    from appliance.db.migrate import migrate
    from appliance.security.envelope import MasterKeys

    logs.configure(settings.log_level, settings.log_format)
    data = settings.data_path.absolute()
    # The children find the private servers (and their passwords) from the data directory.
    env = dict(os.environ) | {"APPLIANCE_DATA_DIR": str(data)}
    if os.geteuid() == 0:
        drop_root(settings, data, env)
    check_sandbox(settings)
    commands = scanner_commands(settings, data, env)  # first: it loads while others start
    with ExitStack() as stack:
        start_servers(settings, data, stack)
        applied = migrate(settings.effective_database_url)
        log.info("migrations applied: %s", applied or "none pending")
        # The master key file is made now, as the service user, before any process seals
        # with it; a master key setting that does not parse stops the start here.
        MasterKeys.from_settings(settings)
        api = [sys.executable, "-m", "appliance.cli", "api"]  # granian and its metrics port
        commands += [(api, group_env(settings, env, None, 0))] + [
            (worker_command(settings, [queue], None, None), group_env(settings, env, queue, i))
            for i, queue in enumerate(QUEUE_CLASSES, start=1)
        ]
        return supervise(commands, settings)
    return 1  # unreachable; keeps type checkers calm


def drop_root(settings: Settings, data: Path, env: dict[str, str]) -> None:
    """Root only makes the service user and hands it the data directory, then is gone."""
    user = service_user.ensure(settings.service_user)
    service_user.hand_over(data, user)
    service_user.become(user, env)
    env["HOME"] = str(data)
    service_user.check_reach(data)
    log.info("running as %s (uid %d)", user.pw_name, user.pw_uid)


def check_sandbox(settings: Settings) -> None:
    """Engines run sandboxed or the appliance does not start (unless the operator turned the
    sandbox off): as a normal user, bubblewrap needs unprivileged user namespaces."""
    from appliance.engines.doctor import check_sandbox as probe

    if settings.sandbox == "off":
        return
    check = probe(settings)
    if not check.ok:
        raise RuntimeError(
            f"the engine sandbox does not work as uid {os.getuid()}: {check.detail} (the "
            "kernel must allow unprivileged user namespaces: `unshare -U true` as that user)"
        )


def start_servers(settings: Settings, data: Path, stack: ExitStack) -> None:
    """Postgres and Redis of our own where none is configured: on Unix sockets, behind
    passwords generated on the first start (``embedded.py``)."""
    if settings.database_url and settings.redis_url:
        return
    secrets = embedded.credentials(data)
    sockets = embedded.socket_dir(data)
    where = str(sockets) if sockets else "127.0.0.1"
    if not settings.database_url:
        auth = local_services.Auth(secrets.postgres, sockets)
        pg = local_services.start_postgres(data / "postgres", embedded.POSTGRES_PORT, auth=auth)
        stack.callback(pg.stop)
        log.info("started private PostgreSQL on %s (password auth)", where)
    if not settings.redis_url:
        auth = local_services.Auth(secrets.redis, sockets)
        rd = local_services.start_redis(data / "redis", embedded.REDIS_PORT, auth=auth)
        stack.callback(rd.stop)
        log.info("started private Redis on %s (password auth)", where)


def scanner_commands(
    settings: Settings, data: Path, env: dict[str, str]
) -> list[tuple[list[str], dict[str, str]]]:
    """clamd of our own when scanning is on and none is configured; the children are told
    its address (APPLIANCE_CLAMD_SOCKET). Without signatures clamd cannot start, and the
    appliance refuses to run unscanned unless told to."""
    if settings.virus_scan == "off" or settings.clamd_socket:
        return []
    signatures = Path(settings.clamd_database_dir)
    if not daemon.has_signatures(signatures):
        raise RuntimeError(
            f"no ClamAV signatures in {signatures} (APPLIANCE_CLAMD_DATABASE_DIR): run "
            "freshclam (Debian's clamav-freshclam keeps them current), or set "
            "APPLIANCE_VIRUS_SCAN=off to convert files unscanned"
        )
    address = embedded.clamd_address(data)
    embedded.run_dir(data).mkdir(mode=0o700, parents=True, exist_ok=True)
    config = daemon.write_config(data / "clamd", address, signatures, settings.max_upload_bytes)
    env["APPLIANCE_CLAMD_SOCKET"] = address
    log.info("starting private clamd on %s (signatures in %s)", address, signatures)
    return [(daemon.command(config), dict(env))]


def group_env(settings: Settings, env: dict[str, str], queue: str | None, n: int) -> dict[str, str]:
    """A process group's environment: its own metrics directory and, for the queue groups,
    its own metrics port (the base port + n: 9181 light, 9182 office, 9183 media)."""
    from appliance.metrics import process

    out = dict(env)
    process.prepare(settings, worker_group([queue]) if queue else api_group(), out)
    if queue and settings.worker_metrics_port:
        out["APPLIANCE_WORKER_METRICS_PORT"] = str(settings.worker_metrics_port + n)
    return out


def supervise(commands: list[tuple[list[str], dict[str, str]]], settings: Settings) -> int:
    """Run each (argv, environment) as a child in its own session until SIGINT/SIGTERM (0)
    or until one of them exits (1); then stop them all (``stop_process_groups``)."""
    stopping = False

    def request_stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    # Own sessions: a Ctrl-C reaches only us, and we stop the children in order.
    children = [subprocess.Popen(cmd, env=env, start_new_session=True) for cmd, env in commands]
    log.info(
        "appliance is up: API at http://%s:%s (sync API under %s), its metrics at http://%s:%s",
        settings.host,
        settings.port,
        settings.sync_prefix,
        settings.api_metrics_host,
        settings.api_metrics_port,
    )
    status = 0
    try:
        while not stopping:
            dead = [c for c in children if c.poll() is not None]
            if dead:
                log.error("%s exited with %s; stopping", dead[0].args, dead[0].returncode)
                status = 1
                break
            time.sleep(0.5)
    finally:
        stop_process_groups(children, STOP_TIMEOUT)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("appliance stopped")
    sys.stdout.flush()
    return status


def stop_process_groups(children: list[subprocess.Popen[bytes]], timeout: float) -> None:
    """SIGTERM each child (a process group leader: started with start_new_session=True), wait
    up to ``timeout`` seconds in all, then SIGKILL whatever is left of each group: also what
    a child that ended (or died) left in its group, such as a server's worker processes
    that would keep its port."""
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for child in children:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(max(0.1, deadline - time.monotonic()))
        # The group outlives its leader while a member runs, and its id is not reused.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()


def api_group() -> str:
    """The API's metrics directory name (one process group per host)."""
    return "api"


def worker_group(queues: list[str]) -> str:
    return "worker-" + "-".join(queues)


def api_command(settings: Settings) -> list[str]:
    return [
        sys.executable,
        "-m",
        "granian",
        "--interface",
        "asgi",
        "--factory",
        "--host",
        settings.host,
        "--port",
        str(settings.port),
        "--workers",
        str(settings.api_workers),
        "--loop",
        "uvloop",  # 7% less CPU per job than asyncio's loop (bench/RESULTS.md)
        "--no-access-log",
        "--respawn-failed-workers",
        "appliance.cli:asgi",
    ]


def api_metrics_command(parent: int) -> list[str]:
    """The API group's metrics port, a process that ends when ``parent`` does."""
    return [sys.executable, "-m", "appliance.jobs.health_server", str(parent)]


def worker_command(
    settings: Settings, queues: list[str], processes: int | None, threads: int | None
) -> list[str]:
    return [
        sys.executable,
        "-m",
        "dramatiq",
        "appliance.jobs.worker",
        "-Q",
        *queues,
        "-p",
        str(processes or settings.worker_processes),
        "-t",
        str(threads or settings.worker_threads),
    ]
