"""The CPU time a task's engine runs used, for usage metering: each sandboxed run reports what
its helper measured (``helper.cpu_seconds``), and the runs of one task add up here. Kept in a
context variable, like the task's deadline, so it follows the worker thread that runs the task
and nothing else."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar


class Spent:
    """CPU seconds counted so far in a ``counting`` block."""

    def __init__(self) -> None:
        self.seconds = 0.0


_SPENT: ContextVar[Spent | None] = ContextVar("engine_cpu_seconds", default=None)


@contextlib.contextmanager
def counting() -> Iterator[Spent]:
    """Engine runs in the block add their CPU seconds to the ``Spent`` it yields."""
    spent = Spent()
    token = _SPENT.set(spent)
    try:
        yield spent
    finally:
        _SPENT.reset(token)


def add(seconds: float) -> None:
    """A run used ``seconds`` of CPU (counted only inside a ``counting`` block)."""
    spent = _SPENT.get()
    if spent is not None and seconds > 0:
        spent.seconds += seconds
