"""``appliance up`` started as root gives up root before anything else starts: Postgres,
Redis, the API and the workers all run as an unprivileged system user
(``APPLIANCE_SERVICE_USER``, ``appliance`` by default; created here when
``scripts/install.sh`` did not). Root does three things first, then never again: make the
user, hand it the data directory, and switch to it for good (groups, gid, uid).

Engines still run in bubblewrap, now unprivileged: in a user namespace of their own with no
capabilities, which the kernel must allow (``unshare -U`` as a normal user); ``appliance up``
checks that before it starts anything, and refuses to run engines unsandboxed.
"""

from __future__ import annotations

import logging
import os
import pwd
import subprocess
import sys
from pathlib import Path

import appliance

log = logging.getLogger(__name__)
HOME = "/var/lib/appliance"  # the default data directory, as scripts/install.sh makes it


def ensure(name: str) -> pwd.struct_passwd:
    """The system user ``name``, created (with its own group, no login) when missing."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    cmd = ["useradd", "--system", "--user-group", "--home-dir", HOME, "--no-create-home"]
    done = subprocess.run(
        [*cmd, "--shell", "/usr/sbin/nologin", name],
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    try:
        user = pwd.getpwnam(name)  # also when a parallel start made it first
    except KeyError:
        why = done.stderr.strip()
        raise RuntimeError(f"cannot create the system user {name!r}: {why}") from None
    log.info("created system user %s (uid %d)", name, user.pw_uid)
    return user


def hand_over(data: Path, user: pwd.struct_passwd) -> None:
    """Make ``data`` (0700) and everything in it the user's. A directory from a start as
    root (its Postgres cluster then the ``postgres`` user's) is walked once; later starts
    find it owned already."""
    data.mkdir(parents=True, exist_ok=True)
    if data.stat().st_uid != user.pw_uid:
        log.info("handing %s to %s", data, user.pw_name)
        for root, dirs, files in os.walk(data):
            os.chown(root, user.pw_uid, user.pw_gid)
            for name in dirs + files:
                os.chown(os.path.join(root, name), user.pw_uid, user.pw_gid, follow_symlinks=False)
    data.chmod(0o700)


def become(user: pwd.struct_passwd, env: dict[str, str]) -> None:
    """Switch this process to ``user`` for good; ``env`` (the children's) gets its names."""
    os.setgroups(os.getgrouplist(user.pw_name, user.pw_gid))
    os.setgid(user.pw_gid)
    os.setuid(user.pw_uid)
    names = {"USER": user.pw_name, "LOGNAME": user.pw_name}
    env.update(names)
    os.environ.update(names)


def check_reach(data: Path) -> None:
    """Once switched: the user must be able to run this Python and this code, and to write
    the data directory (every parent of each must let it pass)."""
    needs = [
        (Path(sys.executable), os.X_OK),
        (Path(appliance.__file__).parent, os.R_OK | os.X_OK),
        (data, os.W_OK | os.X_OK),
    ]
    for path, mode in needs:
        if not os.access(path, mode):
            raise RuntimeError(
                f"the service user cannot reach {path}: a parent directory is closed to it "
                "(e.g. a checkout under /root); install the appliance somewhere other users "
                "may read (e.g. /opt/appliance), or choose another APPLIANCE_DATA_DIR"
            )
