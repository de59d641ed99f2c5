"""The real-host lab harness itself: hosts boot with systemd, SSH and pyinfra reach them,
packages come through the APT proxy, ports cross between the namespaces, faults work, and
nothing is left behind."""

from __future__ import annotations

import json
import os
import textwrap
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from appliance.local_services import free_port
from tests.deploy.conftest import LabFactory
from tests.deploy.lab import Lab, LabError, cleanup_leftovers
from tests.deploy.lab.lab import RUN_ROOT
from tests.deploy.lab.system import cgroup_create, cgroup_paths, netns_add, netns_list

NAMES = ["alpha", "beta", "gamma"]

DEPLOY = textwrap.dedent(
    """
    from io import StringIO

    from pyinfra.operations import apt, files, systemd

    apt.update(name="apt lists", cache_time=3600)
    apt.packages(name="tree", packages=["tree"])
    files.directory(name="site dir", path="/srv/lab-demo")
    files.put(name="page", src=StringIO("hello from the lab\\n"), dest="/srv/lab-demo/index.txt")
    unit = files.put(
        name="unit",
        src=StringIO(
            "[Unit]\\nDescription=lab demo\\n[Service]\\n"
            "ExecStart=/usr/bin/python3 -m http.server 8080 --directory /srv/lab-demo\\n"
            "[Install]\\nWantedBy=multi-user.target\\n"
        ),
        dest="/etc/systemd/system/lab-demo.service",
    )
    systemd.daemon_reload(name="reload units", _if=unit.did_change)
    systemd.service(name="demo service", service="lab-demo.service", running=True, enabled=True)
    """
)


@pytest.fixture(scope="module")
def lab(lab_factory: LabFactory) -> Iterator[Lab]:
    lab = lab_factory(NAMES)
    yield lab
    lab.stop()


@pytest.fixture(scope="module")
def deployed(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """The tiny deploy run twice on every host: (first output, second output)."""
    deploy = tmp_path_factory.mktemp("deploy") / "deploy.py"
    deploy.write_text(DEPLOY)
    first = lab.pyinfra(str(deploy)).stdout
    second = lab.pyinfra(str(deploy)).stdout
    return first, second


def grand_total(output: str) -> dict[str, str]:
    """pyinfra's results line: Grand total HOSTS SUCCESS ERROR NO-CHANGE ('-' for none)."""
    line = next(x for x in output.splitlines() if x.strip().startswith("Grand total"))
    hosts, success, error, unchanged = line.split()[2:6]
    return {"hosts": hosts, "changed": success, "error": error, "unchanged": unchanged}


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for the machine's init to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def boot_id(lab: Lab, name: str) -> str:
    return lab.run(name, "cat /proc/sys/kernel/random/boot_id").stdout.strip()


def test_hosts_boot_with_systemd_as_pid1_on_their_own_addresses(lab: Lab) -> None:
    for name in NAMES:
        out = lab.run(name, "hostname; cat /proc/1/comm; ip -4 -o addr show eth0").stdout
        hostname, init, addr = out.splitlines()
        assert (hostname, init) == (name, "systemd")
        assert f"inet {lab.ip(name)}/24" in addr
        state = lab.run(name, "systemctl is-system-running", check=False).stdout.strip()
        assert state in ("running", "degraded")


def test_hosts_reach_each_other_by_name_but_not_the_outside(lab: Lab) -> None:
    banner = lab.run("alpha", "exec 3<>/dev/tcp/beta/22; head -c 7 <&3").stdout
    assert banner == "SSH-2.0"
    outside = lab.run("alpha", "curl -sS -m 3 http://deb.debian.org/", check=False)
    assert outside.returncode != 0


def test_the_apt_proxy_tunnels_no_https_anywhere(lab: Lab) -> None:
    # Hosts install Python packages from the operator's wheelhouse: the proxy refuses every
    # CONNECT itself (403) without reaching out, so this needs no public index either.
    proxy = f"https_proxy=http://{lab.bridge_ip}:3142"
    curl = "curl -sS -m 20 -o /dev/null -w '%{http_code}'"
    for url in ("https://pypi.org/simple/pip/", "https://deb.debian.org/"):
        tunnel = lab.run("beta", f"{proxy} {curl} {url}", check=False)
        assert tunnel.returncode != 0 and "403" in tunnel.stderr, (url, tunnel.stderr)


def test_each_host_runs_in_its_own_cgroup(lab: Lab) -> None:
    for name in NAMES:
        pid = lab.host(name).init_pid()
        assert pid is not None
        assert f"/{lab.id}/{name}/" in Path(f"/proc/{pid}/cgroup").read_text()


def test_pyinfra_deploy_installs_through_the_apt_proxy_and_a_rerun_changes_nothing(
    lab: Lab, deployed: tuple[str, str]
) -> None:
    first, second = deployed
    assert grand_total(first)["changed"] != "-"
    assert grand_total(first)["error"] == "-"
    rerun = grand_total(second)
    assert (rerun["changed"], rerun["error"]) == ("-", "-"), second
    for name in NAMES:
        assert lab.run(name, "tree --version").stdout.startswith("tree v")
        assert lab.run(name, "systemctl is-active lab-demo").stdout.strip() == "active"
    proxy_log = (lab.run_dir / "apt-cacher-ng/log/apt-cacher.log").read_text()
    assert "/tree_" in proxy_log  # the package came through the proxy


def test_forwarded_port_reaches_a_service_on_a_host(lab: Lab, deployed: tuple[str, str]) -> None:
    port = lab.forward("beta", 8080)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.txt", timeout=10) as resp:
        assert resp.read() == b"hello from the lab\n"


def test_exposed_root_namespace_service_is_reachable_from_hosts(lab: Lab) -> None:
    token = os.urandom(8).hex().encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(token)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        addr = lab.expose(server.server_address[1])
        assert addr.ip == lab.bridge_ip
        for name in ("alpha", "gamma"):
            got = lab.run(name, f"curl -sS -m 5 http://{addr.ip}:{addr.port}/").stdout
            assert got.encode() == token
    finally:
        server.shutdown()
        server.server_close()


def test_killed_host_is_gone_then_boots_again_with_its_disk(
    lab: Lab, deployed: tuple[str, str]
) -> None:
    lab.run("gamma", "echo kept > /root/marker && sync")
    before = boot_id(lab, "gamma")
    lab.kill("gamma")
    assert not lab.host("gamma").running
    with pytest.raises(LabError):
        lab.run("gamma", "true", timeout=30)
    started = time.monotonic()
    lab.boot("gamma")
    assert time.monotonic() - started < 60
    assert boot_id(lab, "gamma") != before
    assert lab.run("gamma", "cat /root/marker").stdout == "kept\n"
    assert lab.run("gamma", "systemctl is-active lab-demo").stdout.strip() == "active"


def test_reboot_inside_a_host_restarts_it(lab: Lab) -> None:
    before = boot_id(lab, "beta")
    boots = lab.host("beta").boots
    lab.run("beta", "systemctl reboot", check=False)
    deadline = time.monotonic() + 90
    while lab.host("beta").boots == boots:
        assert time.monotonic() < deadline, lab.console("beta")
        time.sleep(0.2)
    lab.wait_ready("beta")
    assert boot_id(lab, "beta") != before


def test_cut_link_isolates_a_host_and_heal_restores_it(lab: Lab) -> None:
    probe = "timeout 3 bash -c '</dev/tcp/alpha/22'"
    lab.cut("alpha")
    try:
        assert lab.run("beta", probe, check=False).returncode != 0
    finally:
        lab.heal("alpha")
    assert lab.run("beta", probe, check=False).returncode == 0
    assert lab.run("alpha", "true").returncode == 0


def test_frozen_host_hangs_and_thaws(lab: Lab) -> None:
    lab.freeze("alpha")
    try:
        with pytest.raises(LabError):
            lab.run("alpha", "true", timeout=8)
    finally:
        lab.thaw("alpha")
    assert lab.run("alpha", "true").returncode == 0


def test_stopped_lab_leaves_nothing_behind(lab_factory: LabFactory) -> None:
    small = lab_factory(["solo"])
    pid = small.host("solo").init_pid()
    small.stop()
    small.stop()  # idempotent
    assert not any(ns.startswith(small.id) for ns in netns_list())
    assert not small.run_dir.exists()
    assert not any(p.exists() for p in cgroup_paths(small.id))
    assert pid is not None and not alive(pid)
    assert small.id not in Path("/proc/self/mountinfo").read_text()


def test_leftovers_of_a_crashed_run_are_removed(lab: Lab) -> None:
    lab_id = "applab-dead01"
    run_dir = RUN_ROOT / lab_id
    run_dir.mkdir(parents=True)
    # A pid that has exited: its start time can no longer match.
    (run_dir / "state.json").write_text(json.dumps({"owner_pid": 1, "owner_start": "0"}))
    netns_add(lab_id)
    netns_add(f"{lab_id}-host")
    cgroup_create(f"{lab_id}/host")
    removed = cleanup_leftovers()
    assert lab_id in removed
    assert lab.id not in removed  # a live lab (ours) is left alone
    assert not any(ns.startswith(lab_id) for ns in netns_list())
    assert not run_dir.exists()
    assert not any(p.exists() for p in cgroup_paths(lab_id))
    assert lab.run("alpha", "true").returncode == 0
