"""Rolling upgrade of the api hosts, driven from the lb: for each api host that needs a
restart, one at a time, mark it ``down`` in the nginx upstream and reload nginx (in-flight
requests finish on the old workers, new ones go to the other hosts), switch the host to the
new release and restart its API, wait until /health/ready answers, then put it back.

It runs as one operation on the first lb host (pyinfra runs each operation on all hosts at
once, so a per-host sequence across hosts has to live in one place); the commands on the api
hosts go over their already open connections."""

from __future__ import annotations

import logging
import time
from typing import Any

from pyinfra.operations import python

from fleet.model import Fleet
from fleet.wheelhouse import Release
from roles import api, app
from roles.common import APP_ROOT

log = logging.getLogger("appliance.deploy")
DRAIN_SECONDS = 3  # in-flight requests on the drained host finish meanwhile


def _run(target: Any, command: str) -> None:
    ok, output = target.run_shell_command(command=command, print_output=False)
    if not ok:
        raise RuntimeError(f"{target.name}: `{command}` failed:\n{output.output}")


def mark_command(ip: str, port: int, down: bool) -> str:
    """sed on the upstream file, then a checked reload."""
    line = f"^\\(    server {ip}:{port} [^;]*\\)"
    undrain = f"-e 's/{line} down;/\\1;/'"
    drain = f" -e 's/{line};/\\1 down;/'" if down else ""
    return f"sed -i {undrain}{drain} {api.UPSTREAM_FILE} && nginx -t -q && systemctl reload nginx"


def roll(fleet: Fleet, inventory: Any, lb: Any, targets: list[str], release: Release) -> None:
    for name in targets:
        target = inventory.get_host(name)
        me = fleet.host(name)
        port = int(fleet.get("api_port", me))
        log.warning("rolling: draining %s", name)
        _run(lb, mark_command(me.ip, port, down=True))
        time.sleep(DRAIN_SECONDS)
        _run(
            target,
            f"ln -sfn {app.release_dir(release)} {APP_ROOT}/current.new"
            f" && mv -T {APP_ROOT}/current.new {APP_ROOT}/current"
            " && systemctl daemon-reload && systemctl restart appliance-api"
            f" && {api.wait_ready_command(fleet, me)}",
        )
        _run(lb, mark_command(me.ip, port, down=False))
        log.warning("rolling: %s is back on release %s", name, release.id)


def apply(fleet: Fleet, inventory: Any, release: Release) -> None:
    """Planned on the first lb host only, and only when an api host needs a restart."""
    targets = [
        h.name
        for h in fleet.role("api")
        if api.needs_restart(fleet, inventory.get_host(h.name), release)
    ]
    if not targets:
        return
    lb = inventory.get_host(fleet.role("lb")[0].name)
    python.call(
        name=f"Rolling restart of {', '.join(targets)}, one at a time",
        function=roll,
        fleet=fleet,
        inventory=inventory,
        lb=lb,
        targets=targets,
        release=release,
    )
