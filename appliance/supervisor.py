"""``appliance up``: the whole appliance on one host, in the foreground.

Starts Postgres and Redis from the system binaries when none is configured, applies
migrations, then runs the API (granian) and one Dramatiq worker per queue class as child
processes. Ctrl-C or SIGTERM stops the children, then the private servers, in that order. If a
child dies, everything stops with a non-zero status, so a service manager restarts it whole.
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

from appliance import local_services, logs
from appliance.engines import QUEUE_CLASSES
from appliance.settings import EMBEDDED_POSTGRES_PORT, EMBEDDED_REDIS_PORT, Settings

log = logging.getLogger("appliance.up")
STOP_TIMEOUT = 30.0  # seconds children get to finish current requests and tasks


def run_single_host(settings: Settings) -> int:
    from appliance.db.migrate import migrate

    logs.configure(settings.log_level, settings.log_format)
    env = dict(os.environ)
    with ExitStack() as stack:
        if not settings.database_url:
            pg = local_services.start_postgres(
                settings.data_path / "postgres", EMBEDDED_POSTGRES_PORT
            )
            stack.callback(pg.stop)
            env["APPLIANCE_DATABASE_URL"] = pg.url
            log.info("started private PostgreSQL at %s", pg.url)
        if not settings.redis_url:
            rd = local_services.start_redis(settings.data_path / "redis", EMBEDDED_REDIS_PORT)
            stack.callback(rd.stop)
            env["APPLIANCE_REDIS_URL"] = rd.url
            log.info("started private Redis at %s", rd.url)
        applied = migrate(env.get("APPLIANCE_DATABASE_URL", settings.effective_database_url))
        log.info("migrations applied: %s", applied or "none pending")
        api = [sys.executable, "-m", "appliance.cli", "api"]  # granian and its metrics port
        commands = [(api, group_env(settings, env, None, 0))] + [
            (worker_command(settings, [queue], None, None), group_env(settings, env, queue, i))
            for i, queue in enumerate(QUEUE_CLASSES, start=1)
        ]
        return _supervise(commands, settings)
    return 1  # unreachable; keeps type checkers calm


def group_env(settings: Settings, env: dict[str, str], queue: str | None, n: int) -> dict[str, str]:
    """A process group's environment: its own metrics directory and, for the queue groups,
    its own metrics port (the base port + n: 9181 light, 9182 office, 9183 media)."""
    from appliance.metrics import process

    out = dict(env)
    process.prepare(settings, worker_group([queue]) if queue else api_group(), out)
    if queue and settings.worker_metrics_port:
        out["APPLIANCE_WORKER_METRICS_PORT"] = str(settings.worker_metrics_port + n)
    return out


def _supervise(commands: list[tuple[list[str], dict[str, str]]], settings: Settings) -> int:
    stopping = False

    def request_stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    # Own sessions: a Ctrl-C reaches only us, and we stop the children in order.
    children = [subprocess.Popen(cmd, env=env, start_new_session=True) for cmd, env in commands]
    log.info(
        "appliance is up: API at http://%s:%s (sync API under %s)",
        settings.host,
        settings.port,
        settings.sync_prefix,
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
    up to ``timeout`` seconds in all, then SIGKILL whatever is left of each group."""
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for child in children:
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
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
