"""Helpers started by a worker that is not root, as `appliance up` and the fleet run workers
(the service user; bwrap then makes a user namespace per helper): the process limit is still
each helper's own, the seccomp filter and the size of /tmp hold, and the worker reaches /job.
The test runs a small driver as the service user, on Debian's Python."""

from __future__ import annotations

import json
import os
import pwd
import subprocess

import pytest

from appliance.settings import Settings
from tests.integration.engines.test_sandbox import FILL, FORK_BOMB, NESTED

# Runs as the service user: two fork-bombing helpers side by side, then the other probes.
DRIVER = r"""
import json, os, sys
from pathlib import Path
from appliance.engines.sandbox import Helper, Limits
from appliance.errors import PermanentError
home, probes = Path(sys.argv[1]), json.loads(sys.argv[2])

def facts(helper):
    job = helper.job_dir()
    helper.hand_over(job)
    try:
        helper.call({"dir": f"/job/{job.name}"}, lambda f: None)
    except PermanentError as exc:
        return json.loads(exc.message)

def helper(name, limits, *args):
    return Helper(home / name, limits, argv=[sys.executable, "-I", "-c", probes[name], *args])

limits = Limits(processes=48, tmp_bytes=8 << 20, job_bytes=12 << 20)
first, second = helper("bomb", limits, "400"), helper("neighbour", limits, "20")
out = {"bomb": facts(first), "neighbour": facts(second)}
first.close()
second.close()
for name, args in (("nested", ()), ("fill", (str(64 << 20),))):
    h = helper(name, limits, *args)
    out[name] = facts(h)
    h.close()
out["uid"] = os.getuid()
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def as_service_user(system_python, work_root):
    """Run DRIVER as the service user; what it printed."""
    user = pwd.getpwnam(Settings().service_user)
    home = work_root / "unprivileged"
    home.mkdir()
    os.chown(home, user.pw_uid, user.pw_gid)
    probes = {"bomb": FORK_BOMB, "neighbour": FORK_BOMB, "nested": NESTED, "fill": FILL}
    done = subprocess.run(
        [
            *("setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"),
            *(str(system_python), "-c", DRIVER, str(home), json.dumps(probes)),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "HOME": str(home)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.splitlines()[-1])
    assert out["uid"] == user.pw_uid != 0
    return out


def test_an_unprivileged_workers_fork_bomb_stops_at_the_helpers_own_limit(as_service_user):
    bomb, neighbour = as_service_user["bomb"], as_service_user["neighbour"]
    assert bomb["errno"] == 11 and bomb["made"] < 48, bomb  # EAGAIN
    assert neighbour == {"made": 20, "errno": None}


def test_an_unprivileged_workers_helpers_have_the_filter_and_bounded_scratch(as_service_user):
    nested, fill = as_service_user["nested"], as_service_user["fill"]
    assert nested["unshare_cmd"][0] != 0 and nested["unshare"] == [-1, 1], nested  # EPERM
    assert fill["tmp"][1] == fill["job"][1] == 28, fill  # ENOSPC
