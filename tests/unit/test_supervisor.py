"""``appliance up``'s supervision: a child that dies stops the whole appliance (non-zero
status, so a service manager restarts it whole), and nothing of any child's process group
is left running, also what a child that died left behind (a server's worker processes
holding its port)."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from appliance.settings import Settings
from appliance.supervisor import stop_process_groups, supervise

SETTINGS = Settings.from_env({})


def _alive(pid: int) -> bool:
    """Running (a zombie counts as gone: only its parent's wait is missing)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _ends(pid: int, seconds: float = 5) -> bool:
    """Whether ``pid`` ends within ``seconds`` (a killed process runs on until scheduled)."""
    deadline = time.monotonic() + seconds
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _pid_in(path: Path) -> int:
    for _ in range(500):  # written by the child at its start; bounded
        if path.exists() and path.read_text().strip():
            return int(path.read_text())
        time.sleep(0.01)
    raise AssertionError(f"{path} was never written")


def _with_worker(pidfile: Path, then: str) -> list[str]:
    """A shell that starts a worker process in its own group, records its pid, then ``then``."""
    return ["sh", "-c", f"sleep 300 & echo $! > {pidfile}; {then}"]


def test_a_child_that_dies_stops_the_others_and_what_it_left(tmp_path):
    env = dict(os.environ)
    dying, steady = tmp_path / "dying", tmp_path / "steady"
    commands = [
        (_with_worker(steady, "wait"), env),
        # the server process itself is killed; its worker (same group) lives on
        (_with_worker(dying, f"while [ ! -s {dying} ]; do :; done; kill -9 $$"), env),
    ]
    started = time.monotonic()
    assert supervise(commands, SETTINGS) == 1
    assert time.monotonic() - started < 20
    orphan, other = _pid_in(dying), _pid_in(steady)
    assert _ends(orphan), "the dead child's worker still runs"
    assert _ends(other), "the other child's worker still runs"


def test_sigterm_stops_every_child_with_status_zero(tmp_path):
    env = dict(os.environ)
    pidfile = tmp_path / "w"
    stopper = [
        sys.executable,
        "-c",
        f"import os, signal, time\n"
        f"while not os.path.exists({str(pidfile)!r}): time.sleep(0.01)\n"
        f"os.kill({os.getpid()}, signal.SIGTERM)\n"
        "time.sleep(300)",
    ]
    previous = signal.getsignal(signal.SIGTERM)
    assert supervise([(_with_worker(pidfile, "wait"), env), (stopper, env)], SETTINGS) == 0
    assert signal.getsignal(signal.SIGTERM) is previous  # the handler is given back
    assert _ends(_pid_in(pidfile))


def test_a_group_that_ignores_sigterm_is_killed_after_the_timeout(tmp_path):
    """(It was killed after the timeout before too.)"""
    import subprocess

    ready = tmp_path / "trapped"
    child = subprocess.Popen(
        ["sh", "-c", f"trap '' TERM; echo 1 > {ready}; sleep 300 & wait; wait"],
        start_new_session=True,
    )
    _pid_in(ready)  # the trap is set
    started = time.monotonic()
    stop_process_groups([child], 1.0)
    assert 0.9 <= time.monotonic() - started < 10
    assert child.returncode == -signal.SIGKILL
