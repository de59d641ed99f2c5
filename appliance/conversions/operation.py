"""What a task operation is: one class that declares everything about it.

A task operation (``convert``, ``merge``, ``thumbnail``, ``export/url``, ...) is one module
under ``operations/`` holding one ``Operation`` subclass, listed once in
``operations/enabled.py``. From that list the job graph checks tasks (``graph.plan``),
``GET /v2/operations`` lists rows (``catalog``), the API mounts one single-task route per
operation, metrics label tasks, and the worker runs them (``runner``).

An operation declares:
- ``name``, ``required`` fields and ``fields`` (the task's own fields; the rest of a task's
  payload are the engine's options, checked against ``options_schema``);
- ``formats``: the formats it takes and makes and the engine that runs it (``Formats``);
- ``check``: its graph check, given the formats of its inputs where known;
- ``route``: the conversions an input of a format goes through first; planned once per input
  format (at the graph check, or once an input's file is named), kept with the task
  (``Task.routes``) and run as planned (``planned``);
- ``run``: what a worker does with a claimed task.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec

from appliance.engines import QUEUE_CLASSES, QueueClass
from appliance.engines.formats import normalize
from appliance.engines.registry import Hop, Registry, route_summary
from appliance.errors import InvalidData

if TYPE_CHECKING:
    from appliance.conversions.runtime import Runtime
    from appliance.conversions.task import Outcome, Task

Progress = Callable[[float], None]  # fraction done, 0.0-1.0


class NoOptions(msgspec.Struct, forbid_unknown_fields=True):
    """The options of an operation without an engine: none."""


@dataclass
class PlannedTask:
    """A task of a job being created, as the graph check leaves it."""

    id: uuid.UUID
    name: str
    operation: str
    queue: QueueClass
    payload: dict[str, Any]
    depends_on: list[uuid.UUID] = field(default_factory=list)
    # Format of the file(s) this task produces, when known before it runs.
    output_format: str | None = None
    # The route planned for each input format known now (``Operation.route``), kept with it
    routes: dict[str, list[dict[str, str]]] = field(default_factory=dict)

    def plan_route(self, src: str, hops: list[Hop]) -> None:
        """Keep the route planned for inputs of format ``src``."""
        self.routes[src] = route_summary(hops)

    @property
    def key(self) -> str:
        """The task's key in validation errors (``tasks.<name>``)."""
        return f"tasks.{self.name}"


class Errors:
    """Validation errors collected over a whole job: field key -> messages."""

    def __init__(self) -> None:
        self.items: dict[str, list[str]] = {}

    def add(self, key: str, message: str) -> None:
        self.items.setdefault(key, []).append(message)

    def raise_any(self) -> None:
        if self.items:
            raise InvalidData("The given data was invalid.", errors=self.items)


@dataclass(frozen=True)
class Formats:
    """The formats an operation takes and makes. Its graph check and ``GET /v2/operations``
    both read this: what is listed is what is accepted."""

    inputs: tuple[str, ...] | None  # taken as they are; None: a file of any format
    outputs: tuple[str, ...] | None  # None: the input's own format; (): no file, a result only
    engine: str | None  # the engine that runs it, by id; None: the worker itself
    # other input formats: the conversions that bring one to ``inputs`` (None: refused)
    convert_first: Callable[[Registry, str], list[Hop] | None] | None = None

    def route(self, registry: Registry, src: str) -> list[Hop] | None:
        """The conversions an input of format ``src`` goes through first ([] for none), or
        None if the operation refuses it."""
        if self.inputs is None or src in self.inputs:
            return []
        return self.convert_first(registry, src) if self.convert_first else None


def to_pdf(registry: Registry, src: str) -> list[Hop] | None:
    """``Formats.convert_first`` of operations that take PDF and any format routed to it."""
    return registry.route(src, "pdf")


class Operation:
    """Base of every task operation; subclasses set the class attributes and override what
    differs. The defaults describe an operation that takes inputs and runs on a worker."""

    name: ClassVar[str]
    required: ClassVar[tuple[str, ...]] = ("input",)
    # the task's own fields; any other payload key is an engine option
    fields: ClassVar[frozenset[str]] = frozenset(
        {"input", "input_format", "engine", "engine_version", "filename", "timeout"}
    )
    formats: ClassVar[Formats | None] = None  # None: not listed by GET /v2/operations
    # its file arrives from the client (upload, base64), not from a run: never enqueued first
    file_from_client: ClassVar[bool] = False
    # the payload field that carries a file inside the request (import/base64's "file"): the
    # JSON body cap leaves it out, the inline file cap counts it
    body_file: ClassVar[str | None] = None
    # ends without engine or file transfer: the worker that made it ready runs it at once
    inline: ClassVar[bool] = False
    # payload fields sealed before the task is stored and dropped when it ends, never in its
    # JSON (``security.sealing``): credentials the run needs
    secret_fields: ClassVar[frozenset[str]] = frozenset()
    # payload fields besides ``input`` that name tasks whose files it takes too (after the
    # input's): watermark's ``image``
    ref_fields: ClassVar[tuple[str, ...]] = ()
    # those of them that may name several tasks (a list of names): pdf/embed's ``attachments``
    ref_lists: ClassVar[frozenset[str]] = frozenset()
    # its route and queue class are planned once an input's file is named, if not before
    # (appliance_routed_dependents names these operations; a test keeps the two in step)
    routed: ClassVar[bool] = False

    # -- declarations ----------------------------------------------------------------------
    def options_schema(self, registry: Registry) -> type[msgspec.Struct]:
        """The msgspec Struct its engine options are checked against (listed by
        ``GET /v2/operations?include=options``)."""
        if self.formats is not None and self.formats.engine:
            return registry.engine(self.formats.engine).descriptor.options
        return NoOptions

    def options(self, registry: Registry, payload: dict[str, Any]) -> Any:
        """The engine options of a task: its payload's non-task fields, validated; msgspec's
        ValidationError when one is wrong."""
        extra = {k: v for k, v in payload.items() if k not in self.fields}
        return msgspec.convert(extra, self.options_schema(registry))

    def describe(self) -> str:
        """What a client needs to know to ask for it (the OpenAPI description of its
        single-task route): its module's first paragraph, then its fields and formats."""
        doc = sys.modules[type(self).__module__].__doc__ or ""
        parts = [" ".join(doc.split("\n\n")[0].replace("``", "`").split())]
        parts.append(f"Required fields: {', '.join(self.required)}." if self.required else "")
        if self.formats is not None:
            takes = ", ".join(self.formats.inputs) if self.formats.inputs else "any file"
            routed = " (other formats are converted first)" if self.formats.convert_first else ""
            parts.append(f"Takes {takes}{routed}.")
            outputs = self.formats.outputs
            makes = "no file" if outputs == () else ", ".join(outputs or ("its input's format",))
            parts.append(f"Makes {makes}.")
            if self.formats.engine:
                parts.append(
                    f"Runs on the {self.formats.engine} engine; its other fields are"
                    " that engine's options (GET /v2/operations?include=options)."
                )
        return " ".join(p for p in parts if p)

    # -- the job graph ---------------------------------------------------------------------
    def check(
        self, task: PlannedTask, formats: list[str | None], registry: Registry, errors: Errors
    ) -> None:
        """Check a planned task whose inputs' formats (None: unknown yet) are ``formats``;
        set its ``queue`` and ``output_format``. The default: inputs are needed."""
        if not task.depends_on:
            errors.add(f"{task.key}.input", f"{self.name} needs an input task")

    def check_engine(self, task: PlannedTask, registry: Registry, errors: Errors) -> None:
        """``engine`` and ``engine_version`` pin what runs the task: here, the operation's
        own engine and the version installed; an operation without an engine takes
        neither."""
        p, key = task.payload, task.key
        ours = self.formats.engine if self.formats is not None else None
        engine, version = p.get("engine"), p.get("engine_version")
        if engine is not None and engine != ours:
            runs = f"runs on the {ours} engine" if ours else "runs no engine"
            errors.add(f"{key}.engine", f"{self.name} {runs}")
            return
        if version is None:
            return
        installed = (
            registry.engine(ours).descriptor.version() if ours and registry.has(ours) else None
        )
        if installed != version:
            errors.add(
                f"{key}.engine_version", f"{version} is not installed ({installed or 'none'} is)"
            )

    def route(self, registry: Registry, src: str, payload: dict[str, Any]) -> list[Hop] | None:
        """The conversions an input of format ``src`` goes through before (or, for convert,
        as) the operation's own work; [] for none, None if it is refused."""
        return None if self.formats is None else self.formats.route(registry, src)

    def planned(
        self,
        registry: Registry,
        routes: Mapping[str, Sequence[Mapping[str, str]]] | None,
        src: str,
        payload: dict[str, Any],
    ) -> list[Hop] | None:
        """The route planned for inputs of format ``src`` when the task was planned (its
        ``routes``), while its engines are still enabled; else planned now (an input whose
        format nobody knew before it ran, or its content showed another)."""
        steps = (routes or {}).get(src)
        hops = None if steps is None else registry.hops_of(steps)
        return hops if hops is not None else self.route(registry, src, payload)

    def queue_once_named(
        self, registry: Registry, payload: dict[str, Any], src: str
    ) -> tuple[QueueClass, list[Hop]] | None:
        """The queue class and route a waiting task of this operation needs now that an
        input's format is known to be ``src`` (its file was named); None when it says
        nothing (the worker reports a refused input)."""
        hops = self.route(registry, src, payload)
        return None if hops is None else (input_queue(registry, self, src, hops), hops)

    def media_input(self, src: str) -> bool:
        """Whether an input of format ``src`` needs the media queue without conversions."""
        return False

    # -- the worker ------------------------------------------------------------------------
    def run(self, rt: Runtime, task: Task, progress: Progress) -> Outcome:
        raise NotImplementedError(f"{self.name} does not run on a worker")


def input_queue(registry: Registry, op: Operation, src: str, hops: list[Hop]) -> QueueClass:
    """The queue class a task of ``op`` needs for an input of format ``src`` that goes
    through ``hops`` first: their heaviest engine's, media for a media input, else light; or
    the operation's own engine's where that is heavier (pdf/ocr's OCRmyPDF)."""
    engine = op.formats.engine if op.formats is not None else None
    own: QueueClass = (
        registry.engine(engine).descriptor.queue if engine and registry.has(engine) else "light"
    )
    if hops:
        return heavier(registry.queue_for(hops), own)
    return heavier("media" if op.media_input(src) else "light", own)


def heavier(a: QueueClass, b: QueueClass) -> QueueClass:
    return max(a, b, key=QUEUE_CLASSES.index)


def normalized(payload: dict[str, Any], name: str) -> str | None:
    """The payload's format field ``name`` normalized in place (None when absent)."""
    value = payload.get(name)
    if not value:
        return None
    payload[name] = normalize(str(value))
    return str(payload[name])


def option_field(key: str, exc: msgspec.ValidationError, names: Iterable[str] = ()) -> str:
    """The field a msgspec error names (``... - at `$.width```), under the task's key; a
    check across fields (a struct's ``__post_init__``) names none, so one of ``names`` its
    message starts with stands in."""
    text = str(exc)
    if "`$." in text:  # a dictionary's value is at `$.name[...]`: the dictionary names it
        return f"{key}.{text.rsplit('`$.', 1)[-1].rstrip('`').replace('[...]', '')}"
    first = text.split(" ", 1)[0]
    return f"{key}.{first}" if first in names else key


def check_options(
    op: Operation, task: PlannedTask, registry: Registry, errors: Errors
) -> Any | None:
    """The task's engine options, or None with the error recorded under the field it names."""
    try:
        return op.options(registry, task.payload)
    except msgspec.ValidationError as exc:
        names = op.options_schema(registry).__struct_fields__
        errors.add(option_field(task.key, exc, names), str(exc))
        return None


def check_inputs_are(
    op: Operation, task: PlannedTask, formats: list[str | None], registry: Registry, errors: Errors
) -> None:
    """Inputs whose format is known now must be ones the operation takes (others are checked
    when their files arrive)."""
    assert op.formats is not None
    for fmt in formats:
        if fmt and op.formats.route(registry, fmt) is None:
            errors.add(
                f"{task.key}.input",
                f"{op.name} takes {', '.join(op.formats.inputs or ())}, not {fmt}",
            )
