"""base (every host): packages, time sync, the firewall (only the ports this host's roles need,
from the fleet's own addresses), unattended security upgrades, sysctl for many connections,
the node exporter."""

from __future__ import annotations

from pyinfra.operations import apt, server

from fleet.model import Fleet, HostSpec
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
AUTO_UPGRADES = 'APT::Periodic::Update-Package-Lists "1";\nAPT::Periodic::Unattended-Upgrade "1";\n'


def firewall_context(fleet: Fleet, me: HostSpec) -> dict[str, object]:
    sources = sorted({h.ip + "/32" for h in fleet.hosts} | set(fleet.get("admin_sources")))
    return {
        "fleet_sources": sources,
        "ssh_sources": fleet.get("ssh_sources", me),
        "public_ports": fleet.public_ports(me),
        "internal_ports": fleet.internal_ports(me),
    }


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
            **firewall_context(fleet, me),
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
