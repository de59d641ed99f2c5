"""The parts of a task's life that the worker (sync, ``runner``) and the API (async,
``service``) share: what a task's end records, what it released, and an import's end with the
queue classes of its dependents. The states and their moves are the database functions'
(``db/functions.sql``):

    waiting --claim--> processing --complete--> finished
       ^                   |  \\--fail--> error (and, transitively, its dependents)
       '---retry later-----'   (a lapsed lease: the reconciler puts it back, or fails it)

An import/upload or import/base64 task goes from waiting to finished when the API has its
file; every other task is claimed by a worker once ``ready_at`` has passed.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from appliance.conversions import graph
from appliance.conversions.task import Outcome, OutFile, Ready
from appliance.db.queries import tasks as task_rows
from appliance.engines.registry import Registry
from appliance.errors import SERVICE_FAULT_CODES, InvalidData, RetryableError
from appliance.metrics import JOBS_ENDED

# An import's end is tried again while jobs made meanwhile add dependents to it; each try
# takes one statement, so more than a few in a row means something is wrong.
IMPORT_TRIES = 20


def files_of(outcome: Outcome) -> list[dict[str, Any]]:
    """The outcome's files as a task's end records them."""
    return [asdict(f) for f in outcome.files]


def import_outcome(sha: str, size: int, filename: str) -> Outcome:
    """An import's outcome: its one file."""
    return Outcome.of_files([OutFile(sha, size, filename)])


def released(end: Mapping[str, Any]) -> list[Ready]:
    """The tasks a task's end made ready."""
    return [Ready(r["id"], r["queue"]) for r in end["ready"]]


def client_import_ended(end: Mapping[str, Any] | None) -> tuple[list[Ready], str | None]:
    """A waiting import's end, ended by the API: the tasks it made ready and the task's JSON
    text; TASK_NOT_WAITING if it already had a file or had ended."""
    if end is None or not end["owned"]:
        raise InvalidData(
            "The upload task already has a file or has ended", code="TASK_NOT_WAITING"
        )
    return released(end), end["doc"]


def count_job_end(conn: Any, job_id: Any, status: str | None) -> None:
    """Count a job's end (``status`` None: it has not ended), with whose fault an error was:
    the service's when one of its tasks failed with a code of SERVICE_FAULT_CODES."""
    if status is None:
        return
    fault = "none"
    if status == "error":
        service = task_rows.failed_by_service(conn, job_id, SERVICE_FAULT_CODES)
        fault = "service" if service else "client"
    JOBS_ENDED.labels(status, fault).inc()


class ImportRouting:
    """An import ends with its file, and the dependents it knows of get the route planned
    for their input, by the file's name, and move to the queue class it needs. A stale
    answer (a job made meanwhile added a dependent) brings them all, and the end is tried
    once more::

        routing, end = ImportRouting(registry, outcome, known), None
        while routing.more(end):
            end = complete_import(conn, routing.args(task_id, attempts))

    ``dependents``: those known before the first try ([{id, operation, queue, payload}],
    appliance_routed_dependents); the end answers stale if there are others."""

    def __init__(
        self,
        registry: Registry,
        outcome: Outcome,
        dependents: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        self.registry = registry
        self.outcome = outcome
        self.dependents = list(dependents or [])
        self.tries = 0

    def args(self, task_id: Any, attempts: int | None, doc: bool = False) -> tuple[Any, ...]:
        """The arguments of the next try (``db.queries.tasks.complete_import``)."""
        self.tries += 1
        if self.tries > IMPORT_TRIES:
            raise RetryableError(
                f"Task {task_id} gained dependents on every one of {IMPORT_TRIES} tries to end"
            )
        plans = graph.plans_once_named(
            self.registry, self.dependents, self.outcome.files[0].filename
        )
        routed = [uuid.UUID(str(d["id"])) for d in self.dependents]
        return task_rows.complete_import_args(
            task_id,
            attempts,
            files_of(self.outcome),
            self.outcome.result,
            plans,
            routed,
            doc,
        )

    def more(self, end: Mapping[str, Any] | None) -> bool:
        """Whether to try (again): before the first try (``end`` None), and after a stale
        answer, whose dependents the next try works from."""
        if end is None:
            return self.tries == 0
        if end["stale"]:
            self.dependents = end["dependents"]
        return bool(end["stale"])
