"""Thin wrappers over the machine's tools: commands, cgroups, network namespaces, mounts.

Everything here is idempotent where cleanup needs it (deleting what is already gone is fine),
and every wait is bounded.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

# Tools the harness calls; all come from scripts/install.sh --dev (DEV_PKGS).
TOOLS = {
    "mmdebstrap": "mmdebstrap",
    "systemd-nspawn": "systemd-container",
    "socat": "socat",
    "ip": "iproute2",
    "ss": "iproute2",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "apt-cacher-ng": "apt-cacher-ng",
    "journalctl": "systemd",
}


class LabError(RuntimeError):
    """The lab could not do what was asked; the message says what and shows the evidence."""


def check_tools() -> None:
    """Fail (never skip) when a tool is missing, naming the package that brings it."""
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    missing = [f"{t} ({pkg})" for t, pkg in TOOLS.items() if not shutil.which(t, path=path)]
    if missing:
        raise LabError(f"missing tools: {', '.join(missing)}; run scripts/install.sh --dev")
    if os.geteuid() != 0:
        raise LabError("the lab needs root (namespaces, mounts, cgroups)")


def sh(
    args: Sequence[str], *, check: bool = True, timeout: float = 60, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure raise LabError with its output."""
    try:
        res = subprocess.run(
            list(args), capture_output=True, text=True, timeout=timeout, input=input
        )
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"timed out after {timeout}s: {' '.join(args)}") from exc
    if check and res.returncode != 0:
        raise LabError(
            f"failed ({res.returncode}): {' '.join(args)}\n{res.stdout[-2000:]}{res.stderr[-2000:]}"
        )
    return res


# --- cgroups -------------------------------------------------------------------------------
# On a hybrid layout (cgroup v1 + name=systemd + unified, as on this machine) nspawn and the
# guest's systemd use both the name=systemd and the unified tree; on a pure v2 machine there
# is one tree. Each host gets its own cgroup in every tree so `--keep-unit` hosts stay apart.
CGROUP_BASE = "appliance-lab"


def cgroup_roots() -> list[Path]:
    root = Path("/sys/fs/cgroup")
    if (root / "cgroup.controllers").exists():
        return [root]
    return [p for p in (root / "systemd", root / "unified") if (p / "cgroup.procs").exists()]


def cgroup_paths(rel: str) -> list[Path]:
    return [r / CGROUP_BASE / rel for r in cgroup_roots()]


def cgroup_create(rel: str) -> None:
    for p in cgroup_paths(rel):
        p.mkdir(parents=True, exist_ok=True)


def cgroup_pids(rel: str) -> set[int]:
    """Every process in the cgroup and below it, in any tree."""
    pids: set[int] = set()
    for top in cgroup_paths(rel):
        if not top.is_dir():
            continue
        for procs in top.rglob("cgroup.procs"):
            try:
                pids.update(int(x) for x in procs.read_text().split())
            except OSError:
                continue
    return pids


def cgroup_kill(rel: str, timeout: float = 10) -> None:
    """SIGKILL everything in the cgroup until it is empty (new forks are caught too)."""
    deadline = time.monotonic() + timeout
    while pids := cgroup_pids(rel):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            raise LabError(f"processes survive SIGKILL in cgroup {rel}: {sorted(pids)}")
        time.sleep(0.1)


def cgroup_remove(rel: str) -> None:
    """Remove the cgroup tree, deepest first (the guests' systemd leaves sub-cgroups)."""
    for top in cgroup_paths(rel):
        if not top.is_dir():
            continue
        dirs = sorted((d for d in top.rglob("*") if d.is_dir()), key=lambda d: -len(d.parts))
        for d in [*dirs, top]:
            try:
                d.rmdir()
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise LabError(f"cannot remove cgroup {d}: {exc}") from exc


def cgroup_freeze(rel: str, frozen: bool) -> None:
    """Freeze or thaw a cgroup (a hung host): cgroup v2's cgroup.freeze."""
    files = [p / "cgroup.freeze" for p in cgroup_paths(rel) if (p / "cgroup.freeze").exists()]
    if not files:
        raise LabError(f"no cgroup v2 freezer for {rel}")
    for f in files:
        f.write_text("1" if frozen else "0")


def in_cgroup(rel: str, argv: Sequence[str]) -> list[str]:
    """argv wrapped so the process joins the cgroup (every tree) before it execs.

    A shell wrapper rather than preexec_fn: it is safe in a threaded pytest process."""
    joins = "; ".join(f"echo $$ > {p}/cgroup.procs" for p in cgroup_paths(rel))
    return ["sh", "-c", f'{joins}; exec "$@"', "lab-launch", *argv]


# --- network namespaces ------------------------------------------------------------------------
def netns_list() -> list[str]:
    base = Path("/run/netns")
    return sorted(p.name for p in base.iterdir()) if base.is_dir() else []


def netns_add(name: str) -> None:
    sh(["ip", "netns", "add", name])
    sh(["ip", "-n", name, "link", "set", "lo", "up"])


def netns_delete(name: str) -> None:
    if name in netns_list():
        sh(["ip", "netns", "delete", name], check=False)


# --- mounts ----------------------------------------------------------------------------------
def mounts_under(path: Path) -> list[Path]:
    """Mount points at or below path, deepest first."""
    prefix = str(path.resolve())
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            found.append(Path(point))
    return sorted(found, key=lambda p: -len(p.parts))


def unmount_all(path: Path) -> None:
    for point in mounts_under(path):
        if sh(["umount", str(point)], check=False).returncode != 0:
            sh(["umount", "-l", str(point)], check=False)
    if left := mounts_under(path):
        raise LabError(f"still mounted: {left}")


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of pid (field 22 of /proc/PID/stat), to detect pid reuse."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]
