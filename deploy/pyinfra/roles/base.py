"""base (every host): packages, time sync, the firewall (SSH from the admin networks only, the
ports this host's roles need from the fleet's own addresses), unattended security upgrades,
sysctl for many connections, the node exporter."""

from __future__ import annotations

import ipaddress
import logging

from pyinfra import host
from pyinfra.facts.server import Command
from pyinfra.operations import apt, server

from fleet.model import Fleet, FleetError, HostSpec
from roles.common import put, put_text, restart_if

PACKAGES = [
    "ca-certificates",
    "curl",
    "openssl",
    "nftables",
    "prometheus-node-exporter",
    "systemd-timesyncd",
    "unattended-upgrades",
]
log = logging.getLogger("appliance.deploy")
AUTO_UPGRADES = 'APT::Periodic::Update-Package-Lists "1";\nAPT::Periodic::Unattended-Upgrade "1";\n'


def ssh_networks(fleet: Fleet, me: HostSpec, deploy_address: str) -> list[str]:
    """Where SSH is let in from: ``admin_networks``, else the address this deploy connects
    from as the host sees it (``deploy_address``, from sshd's SSH_CONNECTION), so the run
    that closes SSH keeps its own way in. Neither: refused rather than guessed."""
    configured = fleet.get("admin_networks", me)
    if configured:
        return sorted(str(ipaddress.ip_network(n, strict=False)) for n in configured)
    try:
        return [str(ipaddress.ip_network(deploy_address.strip()))]
    except ValueError:
        raise FleetError(
            f"{me.name}: admin_networks is empty and the address this deploy connects from"
            f" is unknown ({deploy_address.strip()!r}); set admin_networks in group data"
        ) from None


def firewall_context(fleet: Fleet, me: HostSpec, deploy_address: str = "") -> dict[str, object]:
    return {
        "fleet_sources": sorted({h.ip + "/32" for h in fleet.hosts}),
        "ssh_sources": ssh_networks(fleet, me, deploy_address),
        "public_ports": fleet.public_ports(me),
        "internal_ports": fleet.internal_ports(me),
    }


def deploy_address(fleet: Fleet, me: HostSpec) -> str:
    """The operator's address as this host sees the deploy's SSH connection ("" when
    admin_networks makes it moot, or sshd did not say)."""
    if fleet.get("admin_networks", me):
        return ""
    seen = host.get_fact(Command, command="echo ${SSH_CONNECTION%% *}").strip()
    log.warning(
        "%s: SSH let in only from %s, the address this deploy comes from"
        " (set admin_networks to administer from elsewhere)",
        me.name,
        seen or "nowhere",
    )
    return seen


def install(fleet: Fleet, me: HostSpec) -> None:
    apt.update(name="APT lists", cache_time=3600)
    apt.packages(name="Base packages", packages=PACKAGES, no_recommends=True)


def configure(fleet: Fleet, me: HostSpec) -> None:
    sysctl = put("pyinfra/templates/sysctl.conf.j2", "/etc/sysctl.d/60-appliance.conf")
    server.shell(
        name="Apply sysctl settings",
        # A container (LXC, nspawn: the lab) has /proc/sys read-only: its host decides.
        commands=[
            "systemd-detect-virt -cq && echo 'container: sysctl left to the host'"
            " || sysctl -q -e -p /etc/sysctl.d/60-appliance.conf"
        ],
        _if=sysctl.did_change,
    )
    if fleet.get("unattended_upgrades", me):
        put_text(AUTO_UPGRADES, "/etc/apt/apt.conf.d/20auto-upgrades")
    exporter = put(
        "pyinfra/templates/node-exporter.default.j2",
        "/etc/default/prometheus-node-exporter",
        listen_ip=me.ip,
    )
    restart_if("prometheus-node-exporter", exporter)
    if fleet.get("firewall", me):
        rules = put(
            "pyinfra/templates/nftables.conf.j2",
            "/etc/nftables.conf",
            mode="755",
            **firewall_context(fleet, me, deploy_address(fleet, me)),
        )
        server.shell(
            name="Check the firewall rules, then load them",
            commands=["nft -c -f /etc/nftables.conf && nft -f /etc/nftables.conf"],
            _if=rules.did_change,
        )
        restart_if("nftables")


def apply(fleet: Fleet, me: HostSpec) -> None:
    install(fleet, me)
    configure(fleet, me)
