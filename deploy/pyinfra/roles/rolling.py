"""Rolling upgrade of the api hosts, one at a time, with no failed request through the lb.

nginx is never reloaded for it: a reload closes the clients' idle keep-alive connections, and a
request a client sends on one at that instant is lost. The api host drains itself instead
(appliance/api/drain.py has the why):

1. drain: create the API's drain file (each response now closes its connection, so nginx
   drops every connection to the host after using it once more) and refuse new connections
   to the API port from other hosts with a TCP reset, which nginx retries on another api host,
   a POST too, as nothing was sent; then wait until no connection from another host is left
   (bounded by nginx's upstream keep-alive timeout, after which nginx has closed its idle
   ones itself);
2. switch the host to the new release, remove the drain file, restart the API and wait for
   /health/ready from the host itself (over loopback, which the refusal lets through);
3. stop refusing; before the next host drains, wait out nginx's fail_timeout, after which
   nginx sends to this host again, and until it does (were two hosts out at once, nginx
   would have no live upstream and answer 502).

It runs as one operation on the first lb host's deploy (pyinfra runs each operation on all
hosts at once, so a sequence across hosts has to live in one place); the commands on the api
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
NFT_TABLE = "inet appliance_drain"


def _now() -> str:
    return time.strftime("%H:%M:%S") + f"{time.time() % 1:.2f}"[1:]


def _run(target: Any, command: str) -> None:
    ok, output = target.run_shell_command(command=command, print_output=False)
    if not ok:
        raise RuntimeError(f"{target.name}: `{command}` failed:\n{output.output}")


def refuse_command(port: int) -> str:
    """Refuse new TCP connections to ``port`` except over loopback; established ones go on."""
    ruleset = (
        f"table {NFT_TABLE} {{ chain input {{"
        " type filter hook input priority filter - 10; policy accept;"
        ' iif "lo" accept;'
        f" tcp dport {port} ct state new reject with tcp reset; }}; }}"
    )
    return f"{unrefuse_command()} && echo '{ruleset}' | nft -f -"


def unrefuse_command() -> str:
    return f"(nft delete table {NFT_TABLE} 2>/dev/null || true)"


def _remote_connections(ip: str, port: int) -> str:
    """Shell: how many established connections to ``port`` come from other hosts."""
    return (
        f"ss -Htn state established '( sport = :{port} and not dst 127.0.0.0/8"
        f" and not dst {ip} )' | wc -l"
    )


def connections_gone_command(ip: str, port: int, seconds: int) -> str:
    """Waits (at most ``seconds``) until no established connection to ``port`` comes from
    another host; never fails, as the stop that follows finishes what is left. A subshell,
    so it chains with ``&&``."""
    return (
        f'(for i in $(seq 1 {seconds}); do [ "$({_remote_connections(ip, port)})" -eq 0 ]'
        f" && exit 0; sleep 1; done;"
        f" echo 'connections still open to :{port} after {seconds}s' >&2; exit 0)"
    )


def back_in_use_command(ip: str, port: int) -> str:
    """Waits out nginx's fail_timeout for the host just restarted, then (at most 10 s more)
    until a connection from another host shows nginx sends to it again; never fails (with
    no traffic there is nothing to see)."""
    return (
        f"(sleep {api.UPSTREAM_FAIL_TIMEOUT_SECONDS + 1}; for i in $(seq 1 10); do"
        f' [ "$({_remote_connections(ip, port)})" -gt 0 ] && exit 0; sleep 1; done; exit 0)'
    )


def drain_command(ip: str, port: int) -> str:
    return (
        f"touch {app.DRAIN_FILE} && {refuse_command(port)}"
        f" && {connections_gone_command(ip, port, api.UPSTREAM_KEEPALIVE_SECONDS + 5)}"
    )


def restart_command(fleet: Fleet, me: Any, release: Release) -> str:
    return (
        f"ln -sfn {app.release_dir(release)} {APP_ROOT}/current.new"
        f" && mv -T {APP_ROOT}/current.new {APP_ROOT}/current"
        f" && rm -f {app.DRAIN_FILE}"
        " && systemctl daemon-reload && systemctl restart appliance-api"
        f" && {api.wait_ready_command(fleet, me)}"
        f" && {unrefuse_command()}"
    )


def roll(fleet: Fleet, inventory: Any, targets: list[str], release: Release) -> None:
    for i, name in enumerate(targets):
        target = inventory.get_host(name)
        me = fleet.host(name)
        port = int(fleet.get("api_port", me))
        log.warning("rolling: draining %s at %s", name, _now())
        _run(target, drain_command(me.ip, port))
        _run(target, restart_command(fleet, me, release))
        log.warning("rolling: %s is back on release %s at %s", name, release.id, _now())
        if i < len(targets) - 1:
            _run(target, back_in_use_command(me.ip, port))


def apply(fleet: Fleet, inventory: Any, release: Release) -> None:
    """Planned on the first lb host only, and only when an api host needs a restart."""
    targets = [
        h.name
        for h in fleet.role("api")
        if api.needs_restart(fleet, inventory.get_host(h.name), release)
    ]
    if not targets:
        return
    python.call(
        name=f"Rolling restart of {', '.join(targets)}, one at a time",
        function=roll,
        fleet=fleet,
        inventory=inventory,
        targets=targets,
        release=release,
    )
