"""A task's own deadline (its ``timeout`` field), seen by every engine run the task makes: a run
gets the engine's timeout or what the task has left, whichever is less. Kept in a context
variable, so it follows the worker thread that runs the task and nothing else."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextvars import ContextVar

_DEADLINE: ContextVar[float | None] = ContextVar("task_deadline", default=None)


class TaskDeadline:
    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.at = None if seconds is None else time.monotonic() + seconds

    def passed(self) -> bool:
        return self.at is not None and time.monotonic() >= self.at


@contextlib.contextmanager
def within(seconds: float | None) -> Iterator[TaskDeadline]:
    """Runs in the block end by ``seconds`` from now (None: no deadline of the task's own)."""
    deadline = TaskDeadline(seconds)
    token = _DEADLINE.set(deadline.at)
    try:
        yield deadline
    finally:
        _DEADLINE.reset(token)


def remaining(limit: float) -> float:
    """``limit`` seconds, or what the task's deadline leaves if less (at least a moment, so a
    run past the deadline times out at once)."""
    at = _DEADLINE.get()
    return limit if at is None else max(0.001, min(limit, at - time.monotonic()))


def passed() -> bool:
    at = _DEADLINE.get()
    return at is not None and time.monotonic() >= at
