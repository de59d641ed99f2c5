"""A task's own timeout bounds the engine runs it makes: a run gets the engine's timeout or
what the task has left, whichever is less, and is killed at it."""

from __future__ import annotations

import os
import sys
import time

import pytest

from appliance.engines import deadline
from appliance.engines.sandbox import EngineTimeout, Helper, Limits

HANG = "import sys, time; sys.stdin.readline(); time.sleep(600)"


def test_an_engine_run_ends_when_its_tasks_deadline_does(work_root):
    helper = Helper(
        work_root / f"deadline-{os.getpid()}",
        Limits(timeout_seconds=60.0),  # the engine's own timeout is far off
        argv=[sys.executable, "-I", "-c", HANG],
    )
    helper.job_dir()
    started = time.monotonic()
    with deadline.within(1.0), pytest.raises(EngineTimeout) as info:
        helper.call({}, lambda f: None)
    assert time.monotonic() - started < 5
    assert "longer than 1 s" in info.value.message


def test_without_a_task_deadline_the_engines_timeout_holds():
    assert deadline.remaining(60.0) == 60.0
    with deadline.within(None):
        assert deadline.remaining(60.0) == 60.0
    with deadline.within(2.0):
        assert 1.5 < deadline.remaining(60.0) <= 2.0
        assert deadline.remaining(0.5) == 0.5
