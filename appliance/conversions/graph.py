"""Validates a job's task graph and turns it into tasks to insert. Pure: no I/O.

Checks: known operations, required fields and field types, inputs that exist (a task of the
job or, for single-task routes, an existing task id), no cycles; then each operation's own
check (``Operation.check``: formats, routes, options) sets the task's queue class and the
format it makes. Once an import's file is named, ``queues_once_named`` moves the waiting tasks
that take it to the queue class their route now needs.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from appliance.conversions.operation import Errors, Operation, PlannedTask
from appliance.conversions.operations.enabled import OPERATIONS
from appliance.conversions.work import extension_of
from appliance.engines import QUEUE_CLASSES, QueueClass
from appliance.engines.registry import Hop, Registry, route_summary
from appliance.errors import InvalidData

__all__ = [
    "PlannedTask",
    "check_tag",
    "extension_of",
    "plan",
    "plans_once_named",
    "queue_once_named",
]

# Fields whose type the workers rely on: checked here so a wrong type is a 422, not a crash.
_STRING_FIELDS = (
    "url",
    "filename",
    "input_format",
    "output_format",
    "file",
    "engine",
    "engine_version",
)
MAX_TIMEOUT = 86_400  # seconds: a task's own timeout may be at most a day
External = Callable[[str], tuple[uuid.UUID, str | None] | None]


def plan(
    tasks: Mapping[str, Any],
    registry: Registry,
    external: External = lambda _ref: None,
    operations: Mapping[str, Operation] = OPERATIONS,
) -> list[PlannedTask]:
    """Validate ``tasks`` (name -> payload) and return them in definition order (as
    CloudConvert lists them), dependencies linked.

    ``external(ref)`` resolves an input that is not a task of this job (an existing task id of
    the same user) to ``(id, output format or None)``; None means it does not exist.
    """
    if not isinstance(tasks, Mapping) or not tasks:
        raise InvalidData(
            "The job needs at least one task", errors={"tasks": ["must be a non-empty object"]}
        )
    errors = Errors()
    by_name, inputs = _parse(tasks, operations, errors)
    errors.raise_any()
    for name in _topological(by_name, inputs, errors):
        task = by_name[name]
        formats = _link(task, inputs[name], by_name, external, errors)
        if formats is not None:
            operations[task.operation].check_engine(task, registry, errors)
            operations[task.operation].check(task, formats, registry, errors)
    errors.raise_any()
    return list(by_name.values())


def check_tag(tag: str | None) -> None:
    """A job's tag: any text Postgres can hold, so no NUL character (422 naming ``tag``)."""
    if tag is not None and "\x00" in tag:
        raise InvalidData(
            "The given data was invalid.",
            errors={"tag": ["must not contain the NUL character (\\u0000)"]},
        )


def conversions_in(tasks: object) -> int:
    """How many of a job's tasks convert (all but imports and exports): what a client's
    conversion rate limit counts. Malformed tasks count as none (the check refuses them)."""
    if not isinstance(tasks, Mapping):
        return 0
    names = (t.get("operation") for t in tasks.values() if isinstance(t, Mapping))
    return sum(
        1
        for name in names
        if isinstance(name, str)
        and name in OPERATIONS
        and not name.startswith(("import/", "export/"))
    )


def inline_file_chars(tasks: object) -> int:
    """Characters of the files that come inside a job's request (import/base64's ``file``):
    what the cap on JSON bodies leaves out, these having their own."""
    if not isinstance(tasks, Mapping):
        return 0
    total = 0
    for body in tasks.values():
        op = OPERATIONS.get(str(body.get("operation"))) if isinstance(body, Mapping) else None
        value = body.get(op.body_file) if op is not None and op.body_file else None
        total += len(value) if isinstance(value, str) else 0
    return total


def _parse(
    tasks: Mapping[str, Any], operations: Mapping[str, Operation], errors: Errors
) -> tuple[dict[str, PlannedTask], dict[str, list[str]]]:
    """Each task's operation, required fields, field types and input references."""
    by_name: dict[str, PlannedTask] = {}
    inputs: dict[str, list[str]] = {}
    for name, payload in tasks.items():
        key = f"tasks.{name}"
        if not isinstance(payload, Mapping):
            errors.add(key, "must be an object")
            continue
        nul = _first_nul(name, payload)
        if nul is not None:
            errors.add(f"{key}{nul}", "must not contain the NUL character (\\u0000)")
            continue
        name_given = payload.get("operation")
        op = operations.get(name_given) if isinstance(name_given, str) else None
        if op is None:
            errors.add(
                f"{key}.operation",
                f"unknown operation {payload.get('operation')!r}; allowed: {', '.join(operations)}",
            )
            continue
        for req in op.required:
            if payload.get(req) in (None, "", []):
                errors.add(f"{key}.{req}", f"{req} is required for {op.name}")
        _check_types(payload, key, errors)
        inputs[name] = _refs(payload, key, errors) + _field_refs(op, payload, key, errors)
        body = {k: v for k, v in payload.items() if k != "operation"}
        by_name[name] = PlannedTask(uuid.uuid4(), name, op.name, "light", body)
    return by_name, inputs


# A value's place in a task payload: its key or index and its parent's place (None: the top).
_Place = tuple[object, "_Place"] | None


def _first_nul(name: str, payload: Mapping[str, Any]) -> str | None:
    """Where the first NUL character in a task's name or payload is (``""`` for the name,
    ``.field.0.key`` below it), or None. Postgres text and jsonb cannot hold one, so it is
    refused here rather than failing the insert. A loop, not recursion: the payload may be
    nested as deep as the JSON decoder allows."""
    if "\x00" in name:
        return ""
    stack: list[tuple[object, _Place]] = [(payload, None)]
    while stack:
        value, place = stack.pop()
        if isinstance(value, str) and "\x00" in value:
            return _path(place)
        for k, v in _children(value):
            if isinstance(k, str) and "\x00" in k:
                return _path(place)
            stack.append((v, (k, place)))
    return None


def _children(value: object) -> Iterable[tuple[object, object]]:
    if isinstance(value, Mapping):
        return value.items()
    return enumerate(value) if isinstance(value, list) else ()


def _path(place: _Place) -> str:
    keys = []
    while place is not None:
        keys.append(str(place[0]))
        place = place[1]
    return "".join(f".{k}" for k in reversed(keys))


def _refs(payload: Mapping[str, Any], key: str, errors: Errors) -> list[str]:
    refs = payload.get("input", [])
    refs = [refs] if isinstance(refs, str) else refs
    if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
        errors.add(f"{key}.input", "must be a task name or a list of task names")
        return []
    return refs


def _field_refs(op: Operation, payload: Mapping[str, Any], key: str, errors: Errors) -> list[str]:
    """The tasks the operation's other reference fields name (``Operation.ref_fields``)."""
    refs: list[str] = []
    inputs = _refs(payload, key, Errors())
    for name in op.ref_fields:
        value = payload.get(name)
        if value is None:
            continue
        several = name in op.ref_lists and isinstance(value, list)
        named = value if several else [value]
        if not named or not all(isinstance(ref, str) and ref for ref in named):
            errors.add(
                f"{key}.{name}",
                "must be a task name or a list of task names"
                if name in op.ref_lists
                else "must be a task name",
            )
            continue
        for ref in named:
            if ref in inputs:
                errors.add(f"{key}.{name}", f"{ref!r} is an input already; name it only as {name}")
            elif ref in refs:
                errors.add(f"{key}.{name}", f"{ref!r} is named twice")
            else:
                refs.append(ref)
    return refs


def _link(
    task: PlannedTask,
    refs: list[str],
    by_name: dict[str, PlannedTask],
    external: External,
    errors: Errors,
) -> list[str | None] | None:
    """Link the task to its inputs; their formats (None: not known yet), or None when an
    input does not exist."""
    formats: list[str | None] = []
    missing = False
    for ref in refs:
        if ref in by_name:
            task.depends_on.append(by_name[ref].id)
            formats.append(by_name[ref].output_format)
            continue
        found = external(ref)
        if found is None:
            errors.add(f"{task.key}.input", f"input task {ref!r} does not exist")
            missing = True
            continue
        task.depends_on.append(found[0])
        formats.append(found[1])
    return None if missing else formats


def _check_types(payload: Mapping[str, Any], key: str, errors: Errors) -> None:
    for name in _STRING_FIELDS:
        if name in payload and payload[name] is not None and not isinstance(payload[name], str):
            errors.add(f"{key}.{name}", "must be a string")
    timeout = payload.get("timeout")
    if timeout is not None and (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not 0 < timeout <= MAX_TIMEOUT
    ):
        errors.add(f"{key}.timeout", f"must be a number of seconds above 0, at most {MAX_TIMEOUT}")
    headers = payload.get("headers")
    if headers is not None and not (
        isinstance(headers, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items())
    ):
        errors.add(f"{key}.headers", "must be an object of string header values")


def _topological(
    by_name: dict[str, PlannedTask], inputs: dict[str, list[str]], errors: Errors
) -> list[str]:
    """The task names, each after its inputs; a cycle is a 422 naming it. Iterative: a chain
    of thousands of tasks must not run out of stack."""
    order: list[str] = []
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    for start in by_name:
        if state.get(start):
            continue
        path, pending = [start], [iter(inputs[start])]
        state[start] = 1
        while path:
            ref = next(pending[-1], None)
            if ref is None:  # every input of path[-1] is placed
                state[path[-1]] = 2
                order.append(path.pop())
                pending.pop()
            elif ref in by_name and state.get(ref) == 1:
                cycle = " -> ".join([*path[path.index(ref) :], ref])
                errors.add(f"tasks.{ref}.input", f"the task graph has a cycle: {cycle}")
                raise InvalidData("The given data was invalid.", errors=errors.items)
            elif ref in by_name and not state.get(ref):
                state[ref] = 1
                path.append(ref)
                pending.append(iter(inputs[ref]))
    return order


# A task whose input's format was unknown when its job was created (an upload names its file
# only when it arrives) was put on the light queue, with no route. Once the input task has its
# file, the route is planned and kept with the task; if it needs a heavier queue class
# (LibreOffice on `office`, ffmpeg on `media`), the task moves there before it is enqueued, so
# office documents never tie up light workers, nor reach a light-only worker host that lacks
# the engine. The tasks concerned are read by appliance_routed_dependents (migration 0003).
def plans_once_named(
    registry: Registry,
    tasks: Sequence[Mapping[str, Any]],
    filename: str,
    operations: Mapping[str, Operation] = OPERATIONS,
) -> dict[str, dict[str, Any]]:
    """{task id: {queue, routes}} for each waiting task of ``tasks`` ({id, operation, queue,
    payload}) that takes an input named ``filename``: the queue class it needs (its own, or
    a heavier one) and the route planned for that input's format."""
    src = extension_of(filename)
    plans: dict[str, dict[str, Any]] = {}
    for task in tasks:
        found = _once_named(registry, task, src, operations)
        if found is not None:
            queue, hops = found
            heaviest = max(queue, task["queue"], key=QUEUE_CLASSES.index)
            plans[str(task["id"])] = {"queue": heaviest, "routes": {src: route_summary(hops)}}
    return plans


def queue_once_named(
    registry: Registry,
    task: Mapping[str, Any],
    filename: str,
    operations: Mapping[str, Operation] = OPERATIONS,
) -> str | None:
    """The queue class a waiting ``task`` needs now its input is named ``filename``, if
    that is heavier than the one it has; else None."""
    found = _once_named(registry, task, extension_of(filename), operations)
    if found and QUEUE_CLASSES.index(found[0]) > QUEUE_CLASSES.index(task["queue"]):
        return found[0]
    return None


def _once_named(
    registry: Registry,
    task: Mapping[str, Any],
    src: str | None,
    operations: Mapping[str, Operation],
) -> tuple[QueueClass, list[Hop]] | None:
    payload, op = task["payload"], operations.get(task["operation"])
    if not src or op is None or payload.get("input_format"):
        return None  # a declared input format chose the queue and route at creation
    return op.queue_once_named(registry, payload, src)
