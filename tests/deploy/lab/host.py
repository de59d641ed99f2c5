"""One lab host: an overlay on the shared rootfs, its own network namespace, and a
systemd-nspawn process (systemd as PID 1) in its own cgroup, restarted on in-host reboots."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

from tests.deploy.lab.system import (
    LabError,
    cgroup_create,
    cgroup_kill,
    in_cgroup,
    netns_add,
    sh,
)

# nspawn's exit status when the guest asked for a reboot (`systemctl reboot`).
REBOOT_EXIT = 133


@dataclass
class Host:
    """A lab machine. `name` is its hostname; `ip` its fixed address on the lab bridge."""

    name: str
    ip: str
    index: int
    lab_id: str
    run_dir: Path
    nspawn_args: tuple[str, ...] = ()
    boots: int = 0
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _halt: bool = field(default=False, repr=False)
    _exit_codes: list[int] = field(default_factory=list, repr=False)

    @property
    def netns(self) -> str:
        return f"{self.lab_id}-{self.name}"

    @property
    def veth(self) -> str:
        """The bridge-side end of the host's link, in the lab namespace (IFNAMSIZ-safe)."""
        return f"vh{self.index}"

    @property
    def dir(self) -> Path:
        return self.run_dir / "hosts" / self.name

    @property
    def root(self) -> Path:
        """The host's merged root filesystem, as seen from the machine."""
        return self.dir / "merged"

    @property
    def cgroup(self) -> str:
        return f"{self.lab_id}/{self.name}"

    # --- set-up ------------------------------------------------------------------------------
    def prepare(self, rootfs: Path, lab_netns: str, prefix: int, files: dict[str, str]) -> None:
        """Disk (overlay + identity files), network namespace and link to the bridge."""
        for sub in ("upper", "work", "merged"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        opts = f"lowerdir={rootfs},upperdir={self.dir / 'upper'},workdir={self.dir / 'work'}"
        sh(["mount", "-t", "overlay", "overlay", "-o", opts, str(self.root)])
        self._write_identity(prefix, files)
        netns_add(self.netns)
        sh(["ip", "-n", lab_netns, "link", "add", self.veth, "type", "veth",
            "peer", "name", "eth0", "netns", self.netns])  # fmt: skip
        sh(["ip", "-n", lab_netns, "link", "set", self.veth, "master", "br0", "up"])
        cgroup_create(self.cgroup)

    def _write_identity(self, prefix: int, files: dict[str, str]) -> None:
        own = {
            "etc/hostname": f"{self.name}\n",
            "etc/machine-id": secrets.token_hex(16) + "\n",  # fixed: no first-boot presets
            "etc/systemd/network/10-eth0.network": (
                f"[Match]\nName=eth0\n\n[Network]\nAddress={self.ip}/{prefix}\n"
            ),
        }
        for rel, text in {**own, **files}.items():
            path = self.root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        ssh_dir = self.root / "root/.ssh"
        ssh_dir.chmod(0o700)
        (ssh_dir / "authorized_keys").chmod(0o600)
        key = self.root / "etc/ssh/ssh_host_ed25519_key"
        sh(
            [
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                f"root@{self.name}",
                "-f",
                str(key),
            ]
        )

    @property
    def host_key(self) -> str:
        """The host's public ssh key line (type and key) for known_hosts."""
        parts = (self.root / "etc/ssh/ssh_host_ed25519_key.pub").read_text().split()
        return f"{parts[0]} {parts[1]}"

    # --- running -----------------------------------------------------------------------------
    def start(self) -> None:
        """Boot in the background; the supervisor thread re-runs nspawn on in-host reboots."""
        if self.running:
            raise LabError(f"{self.name} is already running")
        self._halt = False
        self._thread = threading.Thread(
            target=self._supervise, name=f"lab-{self.name}", daemon=True
        )
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _supervise(self) -> None:
        while not self._halt:
            self.boots += 1
            with (self.dir / "console.log").open("ab") as log:
                log.write(f"\n--- lab: boot {self.boots} ---\n".encode())
                log.flush()
                self._proc = subprocess.Popen(
                    in_cgroup(self.cgroup, self._nspawn_argv()),
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                )  # fmt: skip
                code = self._proc.wait()
            self._exit_codes.append(code)
            if code != REBOOT_EXIT:
                return

    def _nspawn_argv(self) -> list[str]:
        return [
            "systemd-nspawn", "--boot", f"--machine={self.netns}", "-D", str(self.root),
            "--register=no", "--keep-unit", f"--network-namespace-path=/run/netns/{self.netns}",
            "--capability=CAP_NET_ADMIN", "--console=pipe", *self.nspawn_args,
        ]  # fmt: skip

    @property
    def last_exit(self) -> int | None:
        return self._exit_codes[-1] if self._exit_codes else None

    def init_pid(self) -> int | None:
        """The guest's PID 1 (nspawn's child) as a pid of the machine."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return None
        try:
            children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        except OSError:
            return None
        return int(children[0]) if children else None

    def kill(self, timeout: float = 15) -> None:
        """Power cut: SIGKILL the guest's PID 1; nspawn exits and is not restarted."""
        self._halt = True
        pid = self.init_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                cgroup_kill(self.cgroup)  # nspawn did not exit by itself: take it all down
                self._thread.join(5)
        cgroup_kill(self.cgroup)

    def console(self, lines: int = 40) -> str:
        """nspawn's own output and the tail of the guest's journal, for error messages."""
        out = []
        log = self.dir / "console.log"
        if log.exists():
            text = log.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- nspawn output of {self.name} (exit codes {self._exit_codes}) ---")
            out += text
        journal = self.root / "var/log/journal"
        if journal.is_dir():
            res = sh(["journalctl", "-D", str(journal), "-n", str(lines), "--no-pager",
                      "-o", "short-monotonic"], check=False, timeout=20)  # fmt: skip
            out.append(f"--- journal of {self.name} ---")
            out += res.stdout.splitlines() or [res.stderr.strip()]
        return "\n".join(out)
