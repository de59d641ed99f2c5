"""Validates a job's task graph and turns it into tasks to insert. Pure: no I/O.

Checks: known operations, required fields, inputs that exist (a task of the job or, for
single-task routes, an existing task id), no cycles, a conversion path for each convert
whose input format is known, and for the other operations the input and output formats of
``OPERATION_FORMATS`` (which ``GET /v2/operations`` lists).
"""

from __future__ import annotations

import posixpath
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import msgspec

from appliance.engines import QUEUE_CLASSES, QueueClass
from appliance.engines.formats import normalize
from appliance.engines.registry import Hop, Registry
from appliance.engines.thumbnail import OUTPUTS as THUMBNAIL_FORMATS
from appliance.engines.thumbnail import SOURCES as THUMBNAIL_SOURCES
from appliance.engines.thumbnail import VIDEOS, ThumbnailOptions, thumbnail_route
from appliance.errors import ClientError, InvalidData

OPERATIONS = (
    "import/upload",
    "import/url",
    "import/base64",
    "convert",
    "merge",
    "optimize",
    "pdf/split-pages",
    "thumbnail",
    "metadata",
    "archive",
    "export/url",
)
CONVERT_KEYS = {
    "input",
    "input_format",
    "output_format",
    "engine",
    "engine_version",
    "filename",
    "timeout",
}
# Task fields of optimize that are not the engine's options (``profile`` is one).
OPTIMIZE_KEYS = {"input", "input_format", "engine", "engine_version", "filename", "timeout"}
OPTIMIZE_FORMATS = ("pdf", "jpg", "png")
ARCHIVE_FORMATS = ("zip", "tar", "tar.gz")


def _to_pdf(registry: Registry, src: str) -> list[Hop] | None:
    return registry.route(src, "pdf")


@dataclass(frozen=True)
class OperationFormats:
    """The formats a task operation other than convert takes and makes. The checks below and
    ``GET /v2/operations`` (``catalog``) both read this table: what is listed is what is
    accepted."""

    inputs: tuple[str, ...] | None  # taken as they are; None: a file of any format
    outputs: tuple[str, ...] | None  # None: the input's own format; (): no file, a result only
    engine: str | None  # the engine that runs it, by id; None: the worker itself
    # other input formats: the conversions that bring one to ``inputs`` (None: refused)
    convert_first: Callable[[Registry, str], list[Hop] | None] | None = None

    def route(self, registry: Registry, src: str) -> list[Hop] | None:
        """The conversions an input of format ``src`` goes through first ([] for none), or
        None if this operation refuses it."""
        if self.inputs is None or src in self.inputs:
            return []
        return self.convert_first(registry, src) if self.convert_first else None


OPERATION_FORMATS = {
    "merge": OperationFormats(("pdf",), ("pdf",), "pdf-merge", _to_pdf),
    "optimize": OperationFormats(OPTIMIZE_FORMATS, None, "optimize"),
    "pdf/split-pages": OperationFormats(("pdf",), ("pdf",), "pdf-split"),
    "thumbnail": OperationFormats(
        THUMBNAIL_SOURCES, THUMBNAIL_FORMATS, "thumbnail", thumbnail_route
    ),
    "metadata": OperationFormats(None, (), "metadata"),
    "archive": OperationFormats(None, ARCHIVE_FORMATS, None),
}


def input_queue(registry: Registry, operation: str, src: str, hops: list[Hop]) -> QueueClass:
    """The queue class a task of ``operation`` needs for an input of format ``src`` that goes
    through ``hops`` first: their heaviest engine's, ffmpeg's for a video thumbnail, else
    light."""
    if hops:
        return registry.queue_for(hops)
    return "media" if operation == "thumbnail" and src in VIDEOS else "light"


_REQUIRED = {
    "import/url": ("url",),
    "import/base64": ("file", "filename"),
    "convert": ("input", "output_format"),
    "thumbnail": ("input", "output_format"),
    "metadata": ("input",),
    "archive": ("input", "output_format"),
    "export/url": ("input",),
    "merge": ("input", "output_format"),
    "optimize": ("input",),
    "pdf/split-pages": ("input",),
}


@dataclass
class PlannedTask:
    id: uuid.UUID
    name: str
    operation: str
    queue: QueueClass
    payload: dict[str, Any]
    depends_on: list[uuid.UUID] = field(default_factory=list)
    # Format of the file(s) this task produces, when known before it runs.
    output_format: str | None = None


class _Errors:
    def __init__(self) -> None:
        self.items: dict[str, list[str]] = {}

    def add(self, key: str, message: str) -> None:
        self.items.setdefault(key, []).append(message)


def extension_of(name: str | None) -> str | None:
    if not name:
        return None
    ext = posixpath.splitext(name)[1]
    return normalize(ext) if ext else None


def plan(
    tasks: Mapping[str, Any],
    registry: Registry,
    external: Callable[[str], tuple[uuid.UUID, str | None] | None] = lambda _ref: None,
) -> list[PlannedTask]:
    """Validate ``tasks`` (name -> payload) and return them in dependency order.

    ``external(ref)`` resolves an input that is not a task of this job (an existing task id of
    the same user) to ``(id, output format or None)``; None means it does not exist.
    """
    errors = _Errors()
    if not isinstance(tasks, Mapping) or not tasks:
        raise InvalidData(
            "The job needs at least one task", errors={"tasks": ["must be a non-empty object"]}
        )
    by_name: dict[str, PlannedTask] = {}
    inputs: dict[str, list[str]] = {}
    for name, payload in tasks.items():
        key = f"tasks.{name}"
        if not isinstance(payload, Mapping):
            errors.add(key, "must be an object")
            continue
        operation = payload.get("operation")
        if operation not in OPERATIONS:
            errors.add(
                f"{key}.operation",
                f"unknown operation {operation!r}; allowed: {', '.join(OPERATIONS)}",
            )
            continue
        for req in _REQUIRED.get(operation, ()):
            if payload.get(req) in (None, "", []):
                errors.add(f"{key}.{req}", f"{req} is required for {operation}")
        _check_types(payload, key, errors)
        refs = payload.get("input", [])
        refs = [refs] if isinstance(refs, str) else refs
        if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
            errors.add(f"{key}.input", "must be a task name or a list of task names")
            refs = []
        inputs[name] = refs
        body = {k: v for k, v in payload.items() if k != "operation"}
        by_name[name] = PlannedTask(uuid.uuid4(), name, operation, "light", body)
    if errors.items:
        raise InvalidData("The given data was invalid.", errors=errors.items)

    order = _topological(by_name, inputs, errors)
    for name in order:
        task = by_name[name]
        formats: list[str | None] = []
        missing = False
        for ref in inputs[name]:
            if ref in by_name:
                task.depends_on.append(by_name[ref].id)
                formats.append(by_name[ref].output_format)
                continue
            found = external(ref)
            if found is None:
                errors.add(f"tasks.{name}.input", f"input task {ref!r} does not exist")
                missing = True
                continue
            task.depends_on.append(found[0])
            formats.append(found[1])
        if not missing:
            _check_operation(task, formats, registry, errors)
    if errors.items:
        raise InvalidData("The given data was invalid.", errors=errors.items)
    return list(by_name.values())  # definition order, as CloudConvert lists them


# Fields whose type the workers rely on: checked here so a wrong type is a 422, not a crash.
_STRING_FIELDS = ("url", "filename", "input_format", "output_format", "file", "engine")


def _check_types(payload: Mapping[str, Any], key: str, errors: _Errors) -> None:
    for name in _STRING_FIELDS:
        if name in payload and payload[name] is not None and not isinstance(payload[name], str):
            errors.add(f"{key}.{name}", "must be a string")
    headers = payload.get("headers")
    if headers is not None and not (
        isinstance(headers, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items())
    ):
        errors.add(f"{key}.headers", "must be an object of string header values")


def _topological(
    by_name: dict[str, PlannedTask], inputs: dict[str, list[str]], errors: _Errors
) -> list[str]:
    order: list[str] = []
    state: dict[str, int] = {}  # 1 = visiting, 2 = done

    def visit(name: str, trail: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = " -> ".join([*trail[trail.index(name) :], name])
            errors.add(f"tasks.{name}.input", f"the task graph has a cycle: {cycle}")
            raise ClientError("cycle")
        state[name] = 1
        for ref in inputs[name]:
            if ref in by_name:
                visit(ref, [*trail, name])
        state[name] = 2
        order.append(name)

    try:
        for name in by_name:
            visit(name, [])
    except ClientError:
        raise InvalidData("The given data was invalid.", errors=errors.items) from None
    return order


def _check_operation(
    task: PlannedTask, formats: list[str | None], registry: Registry, errors: _Errors
) -> None:
    p, key = task.payload, f"tasks.{task.name}"
    if task.operation == "import/url":
        url = p.get("url", "")
        scheme = urlsplit(url).scheme if isinstance(url, str) else ""
        if scheme not in ("http", "https"):
            errors.add(f"{key}.url", "must be an http:// or https:// URL")
        task.output_format = extension_of(p.get("filename")) or extension_of(
            urlsplit(url).path if isinstance(url, str) else None
        )
    elif task.operation == "import/base64":
        task.output_format = extension_of(p.get("filename"))
    elif task.operation == "import/upload":
        task.output_format = None
    elif task.operation == "convert":
        _check_convert(task, formats, registry, errors)
    elif task.operation == "merge":
        _check_merge(task, formats, registry, errors)
    elif task.operation == "optimize":
        _check_optimize(task, formats, registry, errors)
    elif task.operation == "pdf/split-pages":
        _check_inputs_are(task, formats, registry, errors)
        task.output_format = "pdf"
    elif task.operation == "thumbnail":
        _check_thumbnail(task, formats, registry, errors)
    elif task.operation == "archive":
        _check_archive(task, errors)
    elif task.operation == "metadata" and not task.depends_on:
        errors.add(f"{key}.input", "metadata needs an input task")
    elif task.operation == "export/url" and not task.depends_on:
        errors.add(f"{key}.input", "export/url needs at least one input task")


def _check_convert(
    task: PlannedTask, formats: list[str | None], registry: Registry, errors: _Errors
) -> None:
    p, key = task.payload, f"tasks.{task.name}"
    out = normalize(str(p.get("output_format", "")))
    p["output_format"] = out
    task.output_format = out
    if not task.depends_on:
        errors.add(f"{key}.input", "convert needs an input task")
        return
    declared = p.get("input_format")
    if declared:
        p["input_format"] = declared = normalize(str(declared))
    options = {k: v for k, v in p.items() if k not in CONVERT_KEYS}
    candidates = {declared} if declared else {f for f in formats if f}
    if not candidates:
        # Input format only known once the file arrives; check the target exists at all.
        if out not in registry.targets:
            errors.add(f"{key}.output_format", f"no engine converts to {out!r}")
        return
    for src in candidates:
        try:
            hops, _ = registry.plan(src, out, options)
        except InvalidData as exc:
            for field_name, msgs in exc.errors.items():
                for msg in msgs:
                    errors.add(f"{key}.{field_name}", msg)
            return
        task.queue = registry.queue_for(hops)


def _check_merge(
    task: PlannedTask, formats: list[str | None], registry: Registry, errors: _Errors
) -> None:
    """merge: output pdf; every input whose format is known now must have a route to pdf."""
    p, key = task.payload, f"tasks.{task.name}"
    rule = OPERATION_FORMATS["merge"]
    makes = ", ".join(rule.outputs or ())
    out = normalize(str(p.get("output_format", "")))
    if out not in (rule.outputs or ()):
        errors.add(f"{key}.output_format", f"merge makes {makes}; allowed: {makes}")
    for extra in sorted(set(p) - CONVERT_KEYS):
        errors.add(f"{key}.{extra}", f"unknown field for merge: {extra}")
    task.output_format = "pdf"
    queues: list[QueueClass] = ["light"]
    for fmt in {f for f in formats if f}:
        hops = rule.route(registry, fmt)
        if hops is None:
            errors.add(f"{key}.input", f"cannot convert {fmt} to pdf for merging")
        else:
            queues.append(input_queue(registry, "merge", fmt, hops))
    task.queue = max(queues, key=QUEUE_CLASSES.index)


def _check_optimize(
    task: PlannedTask, formats: list[str | None], registry: Registry, errors: _Errors
) -> None:
    p, key = task.payload, f"tasks.{task.name}"
    declared = p.get("input_format")
    if declared:
        p["input_format"] = declared = normalize(str(declared))
    known = [declared] if declared else formats
    _check_inputs_are(task, known, registry, errors)
    if declared and OPERATION_FORMATS["optimize"].route(registry, declared) is None:
        errors.add(f"{key}.input_format", f"allowed: {', '.join(OPTIMIZE_FORMATS)}")
    options = {k: v for k, v in p.items() if k not in OPTIMIZE_KEYS}
    schema = registry.engine("optimize").descriptor.options
    try:
        msgspec.convert(options, schema)
    except msgspec.ValidationError as exc:
        message = str(exc)  # "... - at `$.profile`": name that field, as convert does
        name = message.rsplit("`$.", 1)[-1].rstrip("`") if "`$." in message else "options"
        errors.add(f"{key}.{name}", message)
    task.output_format = declared or next(iter({f for f in formats if f}), None)


def _check_inputs_are(
    task: PlannedTask, formats: list[str | None], registry: Registry, errors: _Errors
) -> None:
    """Inputs whose format is known now must be ones the operation takes (others are checked
    when their files arrive)."""
    rule = OPERATION_FORMATS[task.operation]
    for fmt in formats:
        if fmt and rule.route(registry, fmt) is None:
            errors.add(
                f"tasks.{task.name}.input",
                f"{task.operation} takes {', '.join(rule.inputs or ())}, not {fmt}",
            )


def _check_thumbnail(
    task: PlannedTask, formats: list[str | None], registry: Registry, errors: _Errors
) -> None:
    p, key = task.payload, f"tasks.{task.name}"
    out = normalize(str(p.get("output_format", "")))
    p["output_format"] = task.output_format = out
    if out not in THUMBNAIL_FORMATS:
        errors.add(f"{key}.output_format", f"must be one of {', '.join(THUMBNAIL_FORMATS)}")
    if not task.depends_on:
        errors.add(f"{key}.input", "thumbnail needs an input task")
    try:
        msgspec.convert({k: v for k, v in p.items() if k not in CONVERT_KEYS}, ThumbnailOptions)
    except msgspec.ValidationError as exc:
        errors.add(_option_field(key, exc), str(exc))
    declared = p.get("input_format")
    if declared:
        p["input_format"] = declared = normalize(str(declared))
    for src in {declared} if declared else {f for f in formats if f}:
        hops = OPERATION_FORMATS["thumbnail"].route(registry, src)
        if hops is None:
            errors.add(f"{key}.input", f"no thumbnail can be made from {src}")
        else:  # several inputs: the heaviest one's queue
            queue = input_queue(registry, "thumbnail", src, hops)
            task.queue = max(task.queue, queue, key=QUEUE_CLASSES.index)


def _check_archive(task: PlannedTask, errors: _Errors) -> None:
    p, key = task.payload, f"tasks.{task.name}"
    out = normalize(str(p.get("output_format", "")))
    out = {"tgz": "tar.gz"}.get(out, out)
    p["output_format"] = task.output_format = out
    if out not in ARCHIVE_FORMATS:
        errors.add(f"{key}.output_format", f"must be one of {', '.join(ARCHIVE_FORMATS)}")
    if not task.depends_on:
        errors.add(f"{key}.input", "archive needs at least one input task")


def _option_field(key: str, exc: msgspec.ValidationError) -> str:
    """The field a msgspec error names (``... - at `$.width```), under the task's key."""
    text = str(exc)
    return f"{key}.{text.rsplit('`$.', 1)[-1].rstrip('`')}" if "`$." in text else key


# A task whose input's format was unknown when its job was created (an upload names its file
# only when it arrives) was put on the light queue. Once the input task has its file, the
# route is known; if it needs a heavier queue class (LibreOffice on `office`, ffmpeg on
# `media`), the task moves there before it is enqueued, so office documents never tie up light
# workers, nor reach a light-only worker host that lacks the engine. The tasks concerned are
# read by appliance_routed_dependents (migration 0003).
def queues_once_named(
    registry: Registry, tasks: Sequence[Mapping[str, Any]], filename: str
) -> dict[str, str]:
    """{task id: queue class} for each of ``tasks`` that needs a heavier one now its input
    is named ``filename`` (queue_once_named)."""
    queues = {}
    for task in tasks:
        queue = queue_once_named(registry, task, filename)
        if queue is not None:
            queues[str(task["id"])] = queue
    return queues


def queue_once_named(registry: Registry, task: Mapping[str, Any], filename: str) -> str | None:
    """The queue class a waiting ``task`` (convert, thumbnail, merge) needs now its input is
    named ``filename``, if that is heavier than the one it has; else None."""
    payload = task["payload"]
    src = extension_of(filename)
    if not src or payload.get("input_format"):
        return None  # a declared input format already chose the queue at creation
    queue = _queue_for_input(registry, task["operation"], src, payload)
    if queue and QUEUE_CLASSES.index(queue) > QUEUE_CLASSES.index(task["queue"]):
        return queue
    return None


def _queue_for_input(
    registry: Registry, operation: str, src: str, payload: Mapping[str, Any]
) -> QueueClass | None:
    if operation in ("thumbnail", "merge"):
        hops = OPERATION_FORMATS[operation].route(registry, src)
        return None if hops is None else input_queue(registry, operation, src, hops)
    hops = registry.route(src, str(payload.get("output_format", "")))
    return registry.queue_for(hops) if hops else None  # no route: the worker reports it
