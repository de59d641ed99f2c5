"""worker: the engines' Debian packages for this host's engine families, clamd and freshclam
(virus scanning of every imported file, unless the fleet turned it off), the
appliance-worker@.service template and one instance per queue class (processes, threads and
metrics port from group data). Workers restart when their release, unit or settings change;
a restart is graceful (running tasks finish, or are redone elsewhere after their lease)."""

from __future__ import annotations

from typing import Any

from pyinfra.operations import apt

from fleet.defaults import engine_packages
from fleet.model import Fleet, HostSpec
from fleet.wheelhouse import Release
from roles import app
from roles.common import APP_ROOT, put, restart_if

UNIT = "/etc/systemd/system/appliance-worker@.service"
CLAMD_SOCKET = "/run/clamav/clamd.ctl"  # Debian's own, under clamd's RuntimeDirectory
MiB = 1024 * 1024


def unit_context(fleet: Fleet, me: HostSpec, queue: str) -> dict[str, object]:
    return {
        "app_user": app.APP_USER,
        "app_root": APP_ROOT,
        "stop_seconds": fleet.get("worker_stop_seconds", me),
        "memory_max": fleet.get("worker_queues", me)[queue]["memory_max"],
        "tasks_max": fleet.get("worker_tasks_max", me),
    }


def apply(fleet: Fleet, me: HostSpec, release: Release, env: Any) -> None:
    """``env`` is app.install's settings-file operation."""
    packages = engine_packages(fleet.get("engine_families", me))
    if packages:
        apt.packages(name="Engine packages", packages=packages, no_recommends=True)
    scanner = clamav(fleet, me)
    queues = fleet.queues(me)
    # One template for all instances; MemoryMax is the largest of this host's queues, each
    # instance is capped below it by its own processes' engine memory limit.
    biggest = max(queues, key=lambda q: _bytes(queues[q]["memory_max"]))
    unit = put("systemd/appliance-worker@.service.j2", UNIT, **unit_context(fleet, me, biggest))
    link = app.switch(release)
    for queue, conf in queues.items():
        queue_env = put(
            "pyinfra/templates/worker.env.j2",
            f"/etc/appliance/worker-{queue}.env",
            mode="600",
            queue=queue,
            processes=conf["processes"],
            threads=conf["threads"],
            metrics_port=conf["metrics_port"],
            listen_ip=me.ip,
            redis_url=fleet.redis_url("worker"),
            clamd_socket=CLAMD_SOCKET if scanner else "",
        )
        restart_if(f"appliance-worker@{queue}", link, env, unit, queue_env)


def clamd_context(fleet: Fleet, me: HostSpec) -> dict[str, object]:
    threads = sum(q["processes"] * q["threads"] for q in fleet.queues(me).values())
    return {
        "socket": CLAMD_SOCKET,
        "app_user": app.APP_USER,
        "stream_max_bytes": fleet.get("max_upload_bytes") + MiB,  # room for the stream's framing
        "threads": max(2, threads),  # a scan for every task that may run at once
    }


def clamav(fleet: Fleet, me: HostSpec) -> bool:
    """clamd and freshclam, configured and running; False when scanning is off. freshclam
    fetches the signatures first: clamd cannot start without them, and the workers' imports
    wait (fail closed) until it has."""
    if fleet.get("virus_scan", me) == "off":
        return False
    apt.packages(name="ClamAV", packages=["clamav-daemon", "clamav-freshclam"], no_recommends=True)
    fresh = put(
        "pyinfra/templates/freshclam.conf.j2",
        "/etc/clamav/freshclam.conf",
        mirror=fleet.get("clamav_mirror", me),
    )
    restart_if("clamav-freshclam", fresh)
    conf = put(
        "pyinfra/templates/clamd.conf.j2", "/etc/clamav/clamd.conf", **clamd_context(fleet, me)
    )
    restart_if("clamav-daemon", conf)
    return True


def _bytes(size: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    return int(size[:-1]) * units[size[-1]] if size[-1] in units else int(size)
