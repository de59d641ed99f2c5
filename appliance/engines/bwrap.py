"""How one engine helper's sandbox is made (sandbox.py drives the helpers): the bubblewrap
command line, the uid the helper runs as, and the worker's way into the helper's /job.

Inside: its own network, PID, IPC and UTS namespaces (no network at all); ``/usr``, the Python
installation and the application read-only; and three private tmpfs of a fixed size, so that
an engine that writes without end (a decompression bomb) meets ENOSPC, never a full host disk:
``/tmp`` (its HOME), ``/dev/shm`` and ``/job``, where the worker puts each conversion's input
and takes its outputs back. The worker reaches that /job through ``/proc/PID/root/job`` of the
sandbox's first process and holds it open as a directory descriptor: the mount lives and dies
with the sandbox, and a worker killed mid-run leaves no mount behind.

A helper's processes and threads are capped by RLIMIT_NPROC, which the kernel counts per uid
and user namespace, set by ``prlimit`` inside the sandbox, once it exists. A worker running as
root gives each helper a uid of its own, leased from a host-wide range for as long as it runs;
an unprivileged worker (the service user) gives each its own user namespace (bwrap
--unshare-user), where the count starts from zero, while the namespace's creator, bwrap, keeps
the worker's own limit for the service user's count as a whole. Either way the limit is the
helper's alone: a fork bomb in one helper stops there and starves no other helper and no host
service. The seccomp filter (seccomp.py) is loaded by bwrap right before the helper starts.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import appliance
from appliance.engines import seccomp

NOBODY = 65534
JOB_DIR = "/job"
SHM_BYTES = 256 << 20  # the sandbox's own /dev/shm
SANDBOX_SHM = "/dev/shm"  # noqa: S108  (the sandbox's own tmpfs, as SANDBOX_TMP)
SANDBOX_TMP = "/tmp"  # noqa: S108  (an empty tmpfs of the sandbox's own, not the host's)
# Helper uids are leased here: one lock file per uid, held (flock) while a helper runs as it.
# /run is host-wide, so the workers of every queue class and every data directory share it.
LEASES = Path("/run/appliance-sandbox")
UID_SLOTS = 4096  # helpers that may run at once on one host
START_SECONDS = 30.0  # longest a sandbox may take to come up


@dataclass(frozen=True)
class Box:
    """One helper's sandbox beyond the fixed layout."""

    uid: int  # the helper's uid (root workers); ignored otherwise (bwrap maps the caller's)
    processes: int  # its RLIMIT_NPROC (see the module docstring)
    tmp_bytes: int  # size of its /tmp
    job_bytes: int  # size of its /job
    env: dict[str, str] = field(default_factory=dict)  # added to its environment
    seccomp_fd: int | None = None  # a descriptor holding the filter program (seccomp.py)
    info_fd: int | None = None  # where bwrap writes the sandbox's first process id


def _parents(path: Path) -> list[Path]:
    return [p for p in reversed(path.parents) if p != Path("/")]


def package_root() -> Path:
    """The directory that holds the running ``appliance`` package (bound read-only inside)."""
    return Path(appliance.__file__).resolve().parent.parent


def _fixed_layout() -> list[str]:
    return [
        "bwrap",
        "--die-with-parent",
        "--new-session",
        "--clearenv",
        *("--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts"),
        "--unshare-cgroup-try",
        *("--ro-bind", "/usr", "/usr"),
        *("--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64"),
        *("--symlink", "usr/bin", "/bin"),
        # directories bwrap creates itself are 0700; the helper must enter them
        *("--perms", "0755", "--dir", "/etc", "--perms", "0755", "--dir", "/var"),
        *("--perms", "0755", "--dir", "/var/cache"),
        *("--ro-bind", "/etc/ld.so.cache", "/etc/ld.so.cache"),
        # Debian's library alternatives (libblas for ffmpeg) live here
        *("--ro-bind-try", "/etc/alternatives", "/etc/alternatives"),
        *("--ro-bind-try", "/etc/fonts", "/etc/fonts"),
        # LibreOffice's configuration registry (Debian keeps it under /etc)
        *("--ro-bind-try", "/etc/libreoffice", "/etc/libreoffice"),
        *("--ro-bind-try", "/var/cache/fontconfig", "/var/cache/fontconfig"),
        *("--proc", "/proc", "--dev", "/dev"),
        # Chromium (calibre's PDF output) keeps shared memory here; private and bounded
        *("--perms", "1777", "--size", str(SHM_BYTES), "--tmpfs", SANDBOX_SHM),
        *("--setenv", "HOME", SANDBOX_TMP, "--setenv", "PATH", "/usr/bin:/bin"),
        *("--setenv", "LANG", "C.UTF-8", "--setenv", "PYTHONDONTWRITEBYTECODE", "1"),
    ]


def _code_binds() -> list[str]:
    """The Python installation and the application, read-only, at their own paths."""
    readonly = sorted({Path(sys.base_prefix), Path(sys.prefix), package_root()})
    cmd: list[str] = []
    made: set[Path] = set()
    for path in readonly:
        if any(path.is_relative_to(other) and path != other for other in readonly):
            continue  # already visible through a bound parent
        for parent in _parents(path):
            if parent not in made and parent not in (Path("/usr"),):
                cmd += ["--perms", "0755", "--dir", str(parent)]  # bwrap makes them 0700
                made.add(parent)
        cmd += ["--ro-bind", str(path), str(path)]
    return cmd


def sandbox_argv(argv: list[str], box: Box) -> list[str]:
    """bubblewrap (+ setpriv when root) around ``argv``."""
    # /tmp writable by the helper, like any /tmp, and mounted before the code, which may
    # live below /tmp (a test's virtual environment); /job only root's (the worker's): it
    # makes each conversion's directory there and hands that one over (Helper.hand_over)
    cmd = [*_fixed_layout(), "--perms", "1777", "--size", str(box.tmp_bytes)]
    cmd += ["--tmpfs", SANDBOX_TMP, *_code_binds()]
    cmd += ["--perms", "0755", "--size", str(box.job_bytes), "--tmpfs", JOB_DIR]
    for name, value in box.env.items():
        cmd += ["--setenv", name, value]
    if box.seccomp_fd is not None:
        cmd += ["--seccomp", str(box.seccomp_fd)]
    if box.info_fd is not None:
        cmd += ["--info-fd", str(box.info_fd)]
    cmd += ["--chdir", JOB_DIR]
    if os.geteuid() == 0:
        # bwrap as root keeps root inside; drop to the helper's uid, all capabilities gone.
        cmd += [
            "--",
            "/usr/bin/setpriv",
            f"--reuid={box.uid}",
            f"--regid={box.uid}",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--no-new-privs",
        ]
    else:
        cmd += ["--unshare-user", "--"]
    # Set inside, once the sandbox exists: see the module docstring.
    return [*cmd, "/usr/bin/prlimit", f"--nproc={box.processes}", "--", *argv]


def seccomp_fd() -> int:
    """A descriptor bwrap reads the filter program from (not inherited unless passed)."""
    fd = os.memfd_create("appliance-seccomp", os.MFD_CLOEXEC)
    os.write(fd, seccomp.program())
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


class UidLease:
    """A uid in ``[base, base + UID_SLOTS)`` no other helper on this host runs as while the
    lease is held (a lock the kernel drops when the holder dies). Not root: the caller's."""

    def __init__(self, base: int) -> None:
        self.base = base
        self.uid = os.geteuid()
        self._fd: int | None = None

    def take(self) -> int:
        if os.geteuid() != 0 or self._fd is not None:
            return self.uid
        LEASES.mkdir(mode=0o700, exist_ok=True)
        for uid in range(self.base, self.base + UID_SLOTS):
            fd = os.open(LEASES / str(uid), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            self._fd, self.uid = fd, uid
            return uid
        raise RuntimeError(f"all {UID_SLOTS} sandbox uids from {self.base} are in use")

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the lock
            self._fd = None


def _read_info(fd: int, deadline: float) -> dict[str, int]:
    """bwrap's --info-fd JSON (the sandbox's first process, as this side numbers it)."""
    data = b""
    while b"}" not in data:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise TimeoutError("the sandbox did not start in time")
        chunk = os.read(fd, 4096)
        if not chunk:
            raise ChildProcessError("bubblewrap ended before the sandbox started (see its log)")
        data += chunk
    return json.loads(data[: data.index(b"}") + 1])  # type: ignore[no-any-return]


def open_job_root(info_fd: int) -> int:
    """A directory descriptor of the sandbox's /job, once the sandbox is set up: bwrap's first
    process forks the helper only after its mounts are made and its root is switched."""
    deadline = time.monotonic() + START_SECONDS
    pid = _read_info(info_fd, deadline)["child-pid"]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        while not children.read_text().strip():
            if time.monotonic() > deadline:
                raise TimeoutError("the sandbox did not start its helper in time")
            time.sleep(0.0005)
        fd = os.open(f"/proc/{pid}/root{JOB_DIR}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except (FileNotFoundError, ProcessLookupError):
        raise ChildProcessError("the sandbox ended as it started (see its log)") from None
    if os.fstat(fd).st_dev == os.stat("/").st_dev:
        os.close(fd)  # not the sandbox's own tmpfs: never write there
        raise ChildProcessError("the sandbox's /job is not its own")
    return fd


def close_quietly(fd: int | None) -> None:
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)
