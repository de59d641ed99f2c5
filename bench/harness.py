"""Starts a throwaway appliance for benchmarks: private Postgres and Redis, local storage,
the API under granian and Dramatiq workers, all on free ports under a temp directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
from psycopg.rows import dict_row

from appliance import local_services
from appliance.db.migrate import migrate
from appliance.security.keys import create_key
from appliance.supervisor import stop_process_groups


@dataclass
class Running:
    url: str
    key: str
    api_pids: list[int]
    data_dir: Path
    env: dict[str, str]
    root_pids: list[int] = field(default_factory=list)  # api, workers, postgres, redis


def descendants(pid: int) -> list[int]:
    return _children(pid)


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    kids = [int(x) for x in out.split()]
    return kids + [g for k in kids for g in _children(k)]


def cpu_seconds(pids: list[int], reaped: bool = False) -> float:
    """User + system CPU time the processes have used so far; with ``reaped``, that of the
    children each has waited for too (so a finished child's time still counts)."""
    hz = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += sum(int(f) for f in fields[11 : 15 if reaped else 13])
    return total / hz


def pids_matching(pattern: str) -> list[int]:
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


@contextmanager
def appliance(
    *,
    worker_processes: int = 1,
    worker_threads: int | None = None,
    api_workers: int = 1,
    start_workers: bool = True,
    queues: tuple[str, ...] = ("light",),
    separate_workers: bool = False,
    env_extra: dict[str, str] | None = None,
) -> Iterator[Running]:
    """``separate_workers``: one worker per queue class, as ``appliance up`` runs them;
    ``worker_threads`` None: the appliance's default (APPLIANCE_WORKER_THREADS)."""
    root = Path(tempfile.mkdtemp(prefix="appliance-bench-"))
    root.chmod(0o755)
    pg = local_services.start_postgres(root / "pg", local_services.free_port(), fast=False)
    rd = local_services.start_redis(root / "redis", local_services.free_port(), persist=False)
    procs: list[subprocess.Popen] = []
    try:
        migrate(pg.url)
        with psycopg.connect(pg.url, autocommit=True, row_factory=dict_row) as conn:
            key = create_key(conn, "bench@example.test")
        port = local_services.free_port()
        env = {
            **os.environ,
            "APPLIANCE_DATABASE_URL": pg.url,
            "APPLIANCE_REDIS_URL": rd.url,
            "APPLIANCE_DATA_DIR": str(root / "data"),
            "APPLIANCE_PORT": str(port),
            "APPLIANCE_API_WORKERS": str(api_workers),
            "APPLIANCE_LOG_LEVEL": "WARNING",
            "APPLIANCE_DB_POOL_SIZE": "20",
            "APPLIANCE_WORKER_METRICS_PORT": "0",
            "APPLIANCE_API_METRICS_PORT": "0",
            # one load generator, one address: the app's rate limits would measure themselves
            "APPLIANCE_REQUESTS_PER_MINUTE_PER_ADDRESS": "0",
            "APPLIANCE_REQUESTS_PER_MINUTE_PER_KEY": "0",
            "APPLIANCE_CONVERSIONS_PER_MINUTE_PER_ADDRESS": "0",
            # nor may one benchmark user's load meet the per-user caps
            "APPLIANCE_MAX_JOBS_IN_FLIGHT_PER_USER": "0",
            "APPLIANCE_MAX_SYNC_WAITS_PER_USER": "0",
            # no clamd here unless a benchmark starts one (bench_scan.py)
            "APPLIANCE_VIRUS_SCAN": "off",
            **(env_extra or {}),
        }
        cmds = [[sys.executable, "-m", "appliance.cli", "api"]]
        if start_workers:
            for group in [(q,) for q in queues] if separate_workers else [queues]:
                cmds.append(
                    [
                        sys.executable,
                        "-m",
                        "appliance.cli",
                        "worker",
                        "-Q",
                        *group,
                        "-p",
                        str(worker_processes),
                        *(["-t", str(worker_threads)] if worker_threads else []),
                    ]
                )
        log = open(root / "procs.log", "wb")  # noqa: SIM115
        procs = [
            subprocess.Popen(
                c, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
            for c in cmds
        ]
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError((root / "procs.log").read_text()[-3000:])
            time.sleep(0.2)
        api_pids = [procs[0].pid, *_children(procs[0].pid)]
        yield Running(
            url, key, api_pids, root / "data", env, [p.pid for p in procs] + [pg.pid, rd.pid]
        )
    finally:
        stop_process_groups(procs, 20)
        rd.stop()
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)
