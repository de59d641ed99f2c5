"""The hosts' shared root filesystem: one Debian bookworm tree built by mmdebstrap, cached.

The tree is the read-only lower layer of every host's overlay. It is built once per machine
and kept under CACHE_DIR, keyed by a hash of the recipe below: change the recipe and a new
tree is built beside the old one. Builds are serialised with a file lock so parallel test
sessions build it once. Only what provisioning needs to start is included (systemd, sshd,
python3 for pyinfra's facts, sudo for per-user operations); pyinfra installs the rest.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import time
from pathlib import Path

from tests.deploy.lab.system import LabError, sh

CACHE_DIR = Path("/var/cache/appliance-lab")
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
INCLUDE = [
    "systemd-sysv", "udev", "dbus", "openssh-server", "python3", "sudo", "iproute2",
    "procps", "netbase", "curl", "ca-certificates",
]  # fmt: skip
# pyinfra's apt.update(cache_time=...) reads this stamp; Debian (unlike Ubuntu) never writes
# it, so without the hook every re-run would update the package lists again.
APT_STAMP_HOOK = (
    'APT::Update::Post-Invoke-Success {"touch /var/lib/apt/periodic/update-success-stamp '
    '2>/dev/null || true";};\n'
)
# Run inside the tree after mmdebstrap. Hosts get their identity (machine-id, ssh host keys,
# address, authorized key) in their own overlay, so the shared tree holds none.
CUSTOMIZE = [
    ": > $1/etc/machine-id",
    "rm -f $1/etc/ssh/ssh_host_*",
    "chroot $1 systemctl enable systemd-networkd ssh",
    "chroot $1 systemctl mask apt-daily.timer apt-daily-upgrade.timer "
    "systemd-networkd-wait-online.service e2scrub_reap.service",
    "mkdir -p $1/var/lib/apt/periodic",
    f"printf '%s' '{APT_STAMP_HOOK}' > $1/etc/apt/apt.conf.d/15update-stamp",
]
RECIPE_VERSION = 1


def recipe() -> dict[str, object]:
    return {
        "version": RECIPE_VERSION,
        "suite": SUITE,
        "mirror": MIRROR,
        "include": INCLUDE,
        "customize": CUSTOMIZE,
    }


def recipe_hash() -> str:
    return hashlib.sha256(json.dumps(recipe(), sort_keys=True).encode()).hexdigest()[:16]


def rootfs_path() -> Path:
    return CACHE_DIR / f"rootfs-{recipe_hash()}"


def ensure_rootfs(timeout: float = 900) -> Path:
    """The cached tree, built now if missing (about 60-90 s with a network mirror)."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    target = rootfs_path()
    with (CACHE_DIR / "rootfs.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another session may be building the same tree
        if _marker(target).exists():
            return target
        _build(target, timeout)
    return target


def _build(target: Path, timeout: float) -> None:
    tmp = target.with_name(target.name + ".building")
    shutil.rmtree(tmp, ignore_errors=True)
    args = ["mmdebstrap", "--variant=minbase", f"--include={','.join(INCLUDE)}"]
    args += [f"--customize-hook={step}" for step in CUSTOMIZE]
    args += [SUITE, str(tmp), MIRROR]
    started = time.monotonic()
    try:
        sh(args, timeout=timeout)
    except LabError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise LabError(f"building the lab rootfs failed: {exc}") from exc
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    # Written last, beside the tree (not in it): its presence means the tree is whole.
    _marker(target).write_text(
        json.dumps({**recipe(), "build_seconds": round(time.monotonic() - started, 1)})
    )


def _marker(target: Path) -> Path:
    return target.with_name(target.name + ".json")
