"""The typed values a task's life passes around: the claimed task, its input files, what a run
made, and a task made ready for a queue.

Rows become these structs where they leave the database layer (``Task.from_row``); nothing
deeper reads a task by string keys.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from appliance.errors import PermanentError


class InputFile(msgspec.Struct, frozen=True):
    """A file of a task this one takes as input, as its claim reads it (``task_files``)."""

    sha256: str
    filename: str
    size: int
    task_id: uuid.UUID | None = None  # the task that made it


class Task(msgspec.Struct, kw_only=True):
    """A task as a worker claimed it (``appliance_claim_task``, migration 0002)."""

    id: uuid.UUID
    job_id: uuid.UUID | None
    user_id: uuid.UUID
    name: str
    operation: str
    queue: str
    status: str  # processing, once claimed
    payload: dict[str, Any]
    attempts: int
    # the files of the tasks it depends on, in input order
    inputs: list[InputFile] = msgspec.field(default_factory=list)
    # the tasks it depends on: its inputs', then those its other reference fields name
    depends_on: list[uuid.UUID] = msgspec.field(default_factory=list)
    # its job's export/url tasks that take this task's files alone: its end ends them too
    exports: list[uuid.UUID] = msgspec.field(default_factory=list)
    # the route planned for each input format known before it ran: {format: [{engine, from,
    # to}]} (``Operation.planned``)
    routes: dict[str, list[dict[str, str]]] | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Task:
        return msgspec.convert(row, cls, from_attributes=False, strict=False)

    def input_files(self) -> list[InputFile]:
        """The input files; NO_INPUT_FILES if the input tasks made none."""
        if not self.inputs:
            raise PermanentError("The input tasks produced no files", code="NO_INPUT_FILES")
        return self.inputs


@dataclass
class OutFile:
    sha256: str
    size: int
    filename: str
    url: str | None = None


@dataclass
class Outcome:
    """What one run of a task made: its result (the task's JSON ``result``), its files, the
    engine that made them, and conversion-cache entries to record with its end."""

    result: dict[str, Any]
    files: list[OutFile] = field(default_factory=list)
    engine: tuple[str, str] | None = None  # (engine id, version): the task's engine fields
    # conversion_cache rows for the outputs (input_sha256, output_format, options_hash,
    # engine_version, output_sha256, size), recorded with the task's end
    cache: list[dict[str, Any]] = field(default_factory=list)
    cpu_seconds: float | None = None  # what its sandboxed engine runs used (usage metering)

    @classmethod
    def of_files(cls, files: list[OutFile], **result: Any) -> Outcome:
        """The usual outcome: the files, listed by name and size in the result (plus
        ``result``'s other keys, e.g. the route)."""
        listed = [{"filename": f.filename, "size": f.size} for f in files]
        return cls({"files": listed, **result}, files)


@dataclass(frozen=True)
class Ready:
    """A task that may run now, and the queue class that runs it."""

    task_id: uuid.UUID | str
    queue: str


class Dispatcher(Protocol):
    """Puts ready tasks on their queues (the queue side implements it, ``jobs/dispatch.py``)."""

    def dispatch(self, tasks: Iterable[Ready], delay_ms: int | None = None) -> None: ...

    def backlog(self, queues: Iterable[str]) -> dict[str, int]:
        """Tasks due on each queue and not yet picked up by a worker."""
        ...

    def announce(self, task_ids: Iterable[Any], ended_job_id: Any = None) -> None:
        """Wake the sync waits on these tasks, and on their job when it has ended (best
        effort: waiters also re-read now and then)."""

    def close(self) -> None: ...
