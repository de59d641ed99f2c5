"""What one deploy run shares between all hosts: the fleet (with its secrets), the release
(built once), and whether api hosts roll one at a time (not on a fleet's first deploy)."""

from __future__ import annotations

import functools
import logging
import threading
from dataclasses import dataclass
from typing import Any

from fleet import checks, wheelhouse
from fleet.model import Fleet, fleet_from_pyinfra
from fleet.secrets import load_or_create

log = logging.getLogger("appliance.deploy")
# pyinfra runs deploy.py for each host in its own greenlet; the first builds the run while
# the others wait (threading is gevent's here, so the lock yields instead of blocking).
_lock = threading.Lock()


@dataclass
class Run:
    fleet: Fleet
    release: wheelhouse.Release
    rolling: bool


@functools.cache
def _run(inventory: Any) -> Run:
    first = next(iter(inventory))
    fleet = fleet_from_pyinfra(inventory, {})
    fleet.secrets = load_or_create(str(fleet.get("fleet_name", fleet.host(first.name))))
    fleet.validate()
    checks.rule_files()
    checks.grafana_files()
    release = wheelhouse.build()
    from roles import api  # pyinfra-side, imported once the fleet is known good

    rolling = api.rolling_enabled(fleet, inventory)
    log.warning(
        "appliance deploy: release %s, %d hosts, api upgrade %s",
        release.id,
        len(fleet.hosts),
        "rolling one host at a time" if rolling else "direct (first deploy)",
    )
    return Run(fleet, release, rolling)


def current(inventory: Any) -> Run:
    with _lock:
        return _run(inventory)
