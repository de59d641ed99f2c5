"""Preflight: checks on every host before anything changes, so a wrong OS, a host without
systemd or a Python the wheelhouse was not built for stops the deploy at its start."""

from __future__ import annotations

import sys

from pyinfra import host
from pyinfra.facts.server import Command, LinuxDistribution

from fleet.model import Fleet, FleetError, HostSpec

SUPPORTED = {("Debian", 12), ("Ubuntu", 24)}


def apply(fleet: Fleet, me: HostSpec) -> None:
    distro = host.get_fact(LinuxDistribution)
    found = (distro.get("name"), distro.get("major"))
    if found not in SUPPORTED:
        raise FleetError(f"{me.name}: {found} is not a supported OS ({sorted(SUPPORTED)})")
    if host.get_fact(Command, command="cat /proc/1/comm").strip() != "systemd":
        raise FleetError(f"{me.name}: systemd must be PID 1")
    if me.has("api") or me.has("worker"):
        want = f"{sys.version_info.major}.{sys.version_info.minor}"
        arch = host.get_fact(Command, command="uname -m").strip()
        python = host.get_fact(
            Command,
            command="python3 -c 'import sys; print(\"%d.%d\" % sys.version_info[:2])'",
        ).strip()
        if (python, arch) != (want, "x86_64"):
            raise FleetError(
                f"{me.name}: Python {python} on {arch}; the wheelhouse is built here for"
                f" Python {want} on x86_64 (build it on a machine that matches the hosts)"
            )
