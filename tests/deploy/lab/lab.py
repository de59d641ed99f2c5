"""A lab: N named Debian hosts (systemd-nspawn, systemd as PID 1) on one bridge in a private
network namespace, reachable from the root namespace over SSH, with an APT proxy.

Layout of a lab with id applab-XXXXXX (see README.md in this folder):
- namespace `applab-XXXXXX` holds bridge br0 (BRIDGE_IP/24) and one veth per host;
- namespace `applab-XXXXXX-NAME` per host holds its eth0 with a fixed address;
- RUN_ROOT/applab-XXXXXX/ holds keys, ssh config, inventory, overlays, logs, state.json;
- cgroup appliance-lab/applab-XXXXXX/ (every tree) holds every process the lab started.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, NamedTuple

from appliance.local_services import free_port
from tests.deploy.lab.host import Host
from tests.deploy.lab.relay import AptProxy, Relays, start_apt_proxy
from tests.deploy.lab.rootfs import ensure_rootfs
from tests.deploy.lab.system import (
    LabError,
    cgroup_create,
    cgroup_freeze,
    cgroup_kill,
    cgroup_paths,
    cgroup_remove,
    check_tools,
    netns_add,
    netns_delete,
    netns_list,
    process_start_time,
    sh,
    unmount_all,
)

RUN_ROOT = Path("/var/tmp/appliance-lab")
ID_PREFIX = "applab-"
APT_PROXY_PORT = 3142  # where hosts find the APT proxy, on the bridge address
HOST_NAME_OK = set("abcdefghijklmnopqrstuvwxyz0123456789-")


class Address(NamedTuple):
    ip: str
    port: int


class Lab:
    """Start with start_lab(); every method names hosts by their name."""

    def __init__(
        self,
        names: Sequence[str],
        *,
        subnet: str = "10.200.0",
        boot_timeout: float = 180,
        nspawn_args: Sequence[str] = (),
    ) -> None:
        for name in names:
            if not name or set(name) - HOST_NAME_OK or len(name) > 20:
                raise LabError(f"bad host name {name!r}: use 1-20 of [a-z0-9-]")
        if len(set(names)) != len(names) or not 1 <= len(names) <= 200:
            raise LabError(f"host names must be unique, 1 to 200 of them: {list(names)}")
        self.id = ID_PREFIX + secrets.token_hex(3)
        self.netns = self.id
        self.bridge_ip = f"{subnet}.1"
        self.run_dir = RUN_ROOT / self.id
        self.boot_timeout = boot_timeout
        self.hosts: dict[str, Host] = {
            name: Host(name, f"{subnet}.{11 + i}", i, self.id, self.run_dir, tuple(nspawn_args))
            for i, name in enumerate(names)
        }
        self.ssh_key = self.run_dir / "id_ed25519"
        self.ssh_config = self.run_dir / "ssh_config"
        self.known_hosts = self.run_dir / "known_hosts"
        self.inventory = self.run_dir / "inventory.py"
        self.apt_proxy: AptProxy | None = None
        self.relays = Relays(self.netns, self.run_dir, f"{self.id}/relays")
        # SSH reaches each host through a relay on 127.0.0.1 rather than a ProxyCommand:
        # paramiko's ProxyCommand hangs under pyinfra's gevent (select on the pipe never wakes).
        self.ssh_ports: dict[str, int] = {}
        self._stopped = False

    # --- life cycle ------------------------------------------------------------------------
    def start(self) -> Lab:
        check_tools()
        cleanup_leftovers()
        rootfs = ensure_rootfs()
        self.run_dir.mkdir(parents=True)
        self._write_state()
        _ACTIVE.add(self)
        _install_signal_handlers()
        cgroup_create(f"{self.id}/relays")
        self._make_network()
        self._make_keys()
        self.apt_proxy = start_apt_proxy(self.run_dir, f"{self.id}/relays")
        self.relays.expose(self.apt_proxy.port, self.bridge_ip, APT_PROXY_PORT)
        files = self._shared_files()
        for host in self.hosts.values():
            host.prepare(rootfs, self.netns, 24, files)
            self.ssh_ports[host.name] = self.forward(host.name, 22)
        self._write_ssh_files()
        for host in self.hosts.values():
            host.start()
        self.wait_ready(*self.hosts)
        return self

    def stop(self) -> None:
        """Tear everything down; safe to call twice and after a partial start."""
        if self._stopped:
            return
        self._stopped = True
        _ACTIVE.discard(self)
        for host in self.hosts.values():
            host._halt = True
        destroy(self.id)
        if self.apt_proxy:
            self.apt_proxy.stop()

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _write_state(self) -> None:
        me = os.getpid()
        state = {"id": self.id, "owner_pid": me, "owner_start": process_start_time(me)}
        (self.run_dir / "state.json").write_text(json.dumps(state))

    def _make_network(self) -> None:
        netns_add(self.netns)
        sh(["ip", "-n", self.netns, "link", "add", "br0", "type", "bridge"])
        sh(["ip", "-n", self.netns, "addr", "add", f"{self.bridge_ip}/24", "dev", "br0"])
        sh(["ip", "-n", self.netns, "link", "set", "br0", "up"])

    def _make_keys(self) -> None:
        sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"lab@{self.id}",
            "-f", str(self.ssh_key)])  # fmt: skip

    def _shared_files(self) -> dict[str, str]:
        """Files every host gets: the harness key, the APT proxy, every lab name in hosts."""
        names = "".join(f"{h.ip}\t{h.name}\n" for h in self.hosts.values())
        return {
            "root/.ssh/authorized_keys": self.ssh_key.with_suffix(".pub").read_text(),
            "etc/apt/apt.conf.d/01lab-proxy": (
                f'Acquire::http::Proxy "http://{self.bridge_ip}:{APT_PROXY_PORT}";\n'
            ),
            "etc/hosts": f"127.0.0.1\tlocalhost\n::1\tlocalhost\n{names}",
        }

    def _write_ssh_files(self) -> None:
        lines = []
        for h in self.hosts.values():
            port = self.ssh_ports[h.name]
            lines += [f"Host {h.name} {h.ip}", "    HostName 127.0.0.1", f"    Port {port}",
                      f"    HostKeyAlias {h.name}", ""]  # fmt: skip
        lines += [
            "Host *",
            "    User root",
            f"    IdentityFile {self.ssh_key}",
            "    IdentitiesOnly yes",
            f"    UserKnownHostsFile {self.known_hosts}",
            "    StrictHostKeyChecking yes",
            "    BatchMode yes",
            "    ConnectTimeout 5",
            "    ServerAliveInterval 5",
            "    ServerAliveCountMax 3",
            "    LogLevel ERROR",
        ]
        self.ssh_config.write_text("\n".join(lines) + "\n")
        self.known_hosts.write_text(
            "".join(
                f"{h.name},{h.ip},[127.0.0.1]:{self.ssh_ports[h.name]} {h.host_key}\n"
                for h in self.hosts.values()
            )
        )
        self.write_inventory(self.inventory)

    # --- hosts -----------------------------------------------------------------------------
    def host(self, name: str) -> Host:
        try:
            return self.hosts[name]
        except KeyError:
            raise LabError(f"no host {name!r} in lab {self.id} ({list(self.hosts)})") from None

    def ip(self, name: str) -> str:
        return self.host(name).ip

    def run(
        self, name: str, command: str, *, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run a shell command on a host as root over SSH (the same path pyinfra uses)."""
        self.host(name)
        argv = ["ssh", "-F", str(self.ssh_config), name, "--", command]
        try:
            res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise LabError(f"{name}: {command!r} timed out after {timeout}s") from exc
        if check and res.returncode != 0:
            raise LabError(
                f"{name}: {command!r} failed ({res.returncode})\n"
                f"stdout: {res.stdout[-3000:]}\nstderr: {res.stderr[-3000:]}"
            )
        return res

    def wait_ready(self, *names: str, timeout: float | None = None) -> None:
        """Until each host answers SSH and systemd says running/degraded (bounded)."""
        deadline = time.monotonic() + (timeout or self.boot_timeout)
        for name in names:
            self._wait_one(self.host(name), deadline)

    def _wait_one(self, host: Host, deadline: float) -> None:
        last = "no answer yet"
        while True:
            if not host.running:
                raise LabError(f"{host.name}: nspawn exited ({host.last_exit})\n{host.console()}")
            try:
                res = self.run(host.name, "systemctl is-system-running", check=False, timeout=15)
                state = res.stdout.strip()
                if state in ("running", "degraded"):
                    return
                last = f"state {state!r} {res.stderr.strip()}"
            except LabError as exc:
                last = str(exc)
            if time.monotonic() > deadline:
                raise LabError(f"{host.name} not ready in time: {last}\n{host.console()}")
            time.sleep(0.3)

    def console(self, name: str, lines: int = 40) -> str:
        return self.host(name).console(lines)

    # --- faults ----------------------------------------------------------------------------
    def kill(self, name: str) -> None:
        """Host lost: SIGKILL its PID 1 and take its link down. Its disk is kept."""
        host = self.host(name)
        self.cut(name)
        host.kill()

    def boot(self, name: str, *, wait: bool = True) -> None:
        """Power a killed (or never booted) host on again, with its disk as it was."""
        host = self.host(name)
        if host.running:
            raise LabError(f"{name} is running; kill it first")
        self.heal(name)
        host.start()
        if wait:
            self.wait_ready(name)

    def cut(self, name: str) -> None:
        """Unplug the host's cable (bridge-side veth down): no traffic in or out."""
        sh(["ip", "-n", self.netns, "link", "set", self.host(name).veth, "down"])

    def heal(self, name: str) -> None:
        sh(["ip", "-n", self.netns, "link", "set", self.host(name).veth, "up"])

    def freeze(self, name: str) -> None:
        """Hung host: every process of it stops (cgroup freezer), the link stays up."""
        cgroup_freeze(self.host(name).cgroup, True)

    def thaw(self, name: str) -> None:
        cgroup_freeze(self.host(name).cgroup, False)

    # --- traffic between the namespaces ------------------------------------------------------
    def expose(self, local_port: int, lab_port: int | None = None) -> Address:
        """Make 127.0.0.1:local_port of the root namespace reachable from every host at the
        returned address (the bridge address; lab_port defaults to local_port)."""
        port = lab_port or local_port
        if port == APT_PROXY_PORT:
            raise LabError(f"port {port} on the bridge is the APT proxy's")
        self.relays.expose(local_port, self.bridge_ip, port)
        return Address(self.bridge_ip, port)

    def forward(self, name: str, port: int, local_port: int | None = None) -> int:
        """Make host:port reachable from the root namespace at 127.0.0.1:<returned port>."""
        local = local_port or free_port()
        self.relays.forward(self.ip(name), port, local)
        return local

    @contextlib.contextmanager
    def tunnel(self, name: str, port: int, timeout: float = 20) -> Iterator[int]:
        """``ssh -L``: the host's own 127.0.0.1:port at 127.0.0.1:<yielded port>, the way an
        operator reaches a service bound to a host's loopback (over the host's SSH only)."""
        local = free_port()
        argv = ["ssh", "-F", str(self.ssh_config), "-N", "-o", "ExitOnForwardFailure=yes",
                "-L", f"127.0.0.1:{local}:127.0.0.1:{port}", name]  # fmt: skip
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + timeout
            while not _accepts(local):
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode() if proc.poll() is not None else ""
                    raise LabError(f"ssh -L to {name}:{port} did not come up: {err}")
                time.sleep(0.1)
            yield local
        finally:
            proc.terminate()
            proc.wait(10)

    # --- pyinfra -----------------------------------------------------------------------------
    def host_data(self, name: str) -> dict[str, Any]:
        """pyinfra host data to reach a host over SSH through the lab namespace."""
        return {
            "ssh_hostname": "127.0.0.1",
            "ssh_port": self.ssh_ports[name],
            "ssh_user": "root",
            "ssh_key": str(self.ssh_key),
            "ssh_config_file": str(self.ssh_config),
            "ssh_known_hosts_file": str(self.known_hosts),
            "ssh_strict_host_key_checking": "yes",
            "lab_ip": self.ip(name),
        }

    def write_inventory(
        self,
        path: Path,
        groups: Mapping[str, Iterable[str]] | None = None,
        data: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> Path:
        """A pyinfra inventory file: each group a list of (name, host data); by default one
        group `lab` with every host. `data` adds per-host data to the harness's own."""
        groups = groups or {"lab": list(self.hosts)}
        extra = data or {}
        body = [f"# pyinfra inventory of lab {self.id}, written by tests/deploy/lab"]
        for group, names in groups.items():
            if not group.isidentifier():
                raise LabError(f"group name {group!r} is not a Python identifier")
            entries = [(n, {**self.host_data(n), **extra.get(n, {})}) for n in names]
            body.append(f"{group} = {entries!r}")
        path.write_text("\n".join(body) + "\n")
        return path

    def pyinfra(
        self, *args: str, inventory: Path | None = None, timeout: float = 900
    ) -> subprocess.CompletedProcess[str]:
        """Run `pyinfra -y INVENTORY ARGS...` (the venv's pyinfra); its whole log (pyinfra
        writes most of it to stderr) is in .stdout. Raises with the log on failure."""
        argv = [sys.executable, "-m", "pyinfra", "-y", str(inventory or self.inventory), *args]
        try:
            res = subprocess.run(
                argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired as exc:
            raise LabError(f"pyinfra timed out after {timeout}s: {args}") from exc
        if res.returncode != 0:
            raise LabError(f"pyinfra failed ({res.returncode}):\n{res.stdout[-8000:]}")
        return res


def _accepts(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
        return True
    return False


def start_lab(names: Sequence[str], **options: Any) -> Lab:
    """Create and boot a lab; on any failure everything created so far is removed."""
    lab = Lab(names, **options)
    try:
        return lab.start()
    except BaseException:
        lab.stop()
        raise


# --- cleanup -------------------------------------------------------------------------------
_ACTIVE: set[Lab] = set()
_CLEANUP_LOCK = threading.Lock()


def destroy(lab_id: str) -> None:
    """Remove every trace of a lab: processes, mounts, namespaces, cgroups, files."""
    with _CLEANUP_LOCK:
        cgroup_kill(lab_id)
        run_dir = RUN_ROOT / lab_id
        unmount_all(run_dir)
        for ns in netns_list():
            if ns == lab_id or ns.startswith(lab_id + "-"):
                netns_delete(ns)
        cgroup_remove(lab_id)
        if os.environ.get("LAB_KEEP_FILES") != "1":
            shutil.rmtree(run_dir, ignore_errors=True)


def _owner_alive(run_dir: Path) -> bool:
    try:
        state = json.loads((run_dir / "state.json").read_text())
    except (OSError, ValueError):
        # A parallel session writes state.json right after creating its run dir: a fresh dir
        # without it is a lab being born, not a leftover.
        try:
            return time.time() - run_dir.stat().st_mtime < 60
        except OSError:
            return False
    pid = state.get("owner_pid")
    return isinstance(pid, int) and process_start_time(pid) == state.get("owner_start")


def cleanup_leftovers() -> list[str]:
    """Destroy labs whose owning process is gone (a crashed or killed run); labs of live
    parallel sessions are left alone. Returns the ids removed."""
    ids = {p.name for p in RUN_ROOT.glob(ID_PREFIX + "*")} if RUN_ROOT.is_dir() else set()
    ids |= {
        ns.split("-")[0] + "-" + ns.split("-")[1] for ns in netns_list() if ns.startswith(ID_PREFIX)
    }
    for tree in cgroup_paths(""):
        if tree.is_dir():
            ids |= {p.name for p in tree.glob(ID_PREFIX + "*")}
    stale = sorted(i for i in ids if not _owner_alive(RUN_ROOT / i))
    for lab_id in stale:
        destroy(lab_id)
    return stale


def _stop_all() -> None:
    for lab in list(_ACTIVE):
        try:
            lab.stop()
        except Exception as exc:  # keep stopping the others
            print(f"lab cleanup of {lab.id} failed: {exc}", file=sys.stderr)


atexit.register(_stop_all)
_HANDLED: dict[int, Any] = {}


def _install_signal_handlers() -> None:
    """SIGTERM/SIGHUP (CI cancelling, a closed terminal) tear the labs down, then let the
    signal do what it did before. SIGINT is pytest's: its fixture finalizers run."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if sig not in _HANDLED:
            _HANDLED[sig] = signal.signal(sig, _on_signal)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    _stop_all()
    previous = _HANDLED.get(signum)
    signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
    if callable(previous):
        previous(signum, frame)
    else:
        os.kill(os.getpid(), signum)
