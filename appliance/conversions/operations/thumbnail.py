"""``thumbnail``: ``count`` thumbnails per input file (pages of a PDF, frames of a video; an
image gives one), made by the sandboxed ``thumbnail`` engine after any conversions the
router needs first; the route is in the result like a convert task's."""

from __future__ import annotations

import tempfile
from pathlib import Path

import msgspec

from appliance.conversions.operation import (
    Errors,
    Formats,
    Operation,
    PlannedTask,
    Progress,
    heavier,
    input_queue,
    normalized,
    option_field,
)
from appliance.conversions.operations.convert import normalize_out
from appliance.conversions.runtime import Runtime
from appliance.conversions.task import InputFile, Outcome, OutFile, Task
from appliance.conversions.work import (
    check_output,
    checked_input,
    each_input,
    keep,
    names_for,
    output_name,
    run_hops,
)
from appliance.engines.registry import Registry, route_summary
from appliance.engines.thumbnail import OUTPUTS, SOURCES, VIDEOS, ThumbnailOptions, thumbnail_route
from appliance.errors import PermanentError


class Thumbnail(Operation):
    name = "thumbnail"
    required = ("input", "output_format")
    fields = Operation.fields | {"output_format"}
    formats = Formats(SOURCES, OUTPUTS, "thumbnail", thumbnail_route)
    routed = True

    def options_schema(self, registry: Registry) -> type[msgspec.Struct]:
        return ThumbnailOptions

    def media_input(self, src: str) -> bool:
        return src in VIDEOS  # ffmpeg grabs the frame

    def check(
        self, task: PlannedTask, formats: list[str | None], registry: Registry, errors: Errors
    ) -> None:
        assert self.formats is not None
        p, key = task.payload, task.key
        task.output_format = normalize_out(p)
        if task.output_format not in OUTPUTS:
            errors.add(f"{key}.output_format", f"must be one of {', '.join(OUTPUTS)}")
        super().check(task, formats, registry, errors)
        try:
            self.options(registry, p)
        except msgspec.ValidationError as exc:
            errors.add(option_field(key, exc), str(exc))
        declared = normalized(p, "input_format")
        for src in {declared} if declared else {f for f in formats if f}:
            hops = self.route(registry, src, p)
            if hops is None:
                errors.add(f"{key}.input", f"no thumbnail can be made from {src}")
            else:  # several inputs: the heaviest one's queue
                task.plan_route(src, hops)
                task.queue = heavier(task.queue, input_queue(registry, self, src, hops))

    def run(self, rt: Runtime, task: Task, progress: Progress) -> Outcome:
        options = self.options(rt.registry, task.payload)
        outputs: list[OutFile] = []
        route: list[dict[str, str]] = []
        with tempfile.TemporaryDirectory(dir=rt.work_root()) as tmp:
            for i, f, step in each_input(task.input_files(), progress):
                made, route = self._one(rt, task, f, Path(tmp) / str(i), options, step)
                outputs += made
        return Outcome.of_files(outputs, route=route)

    def _one(
        self,
        rt: Runtime,
        task: Task,
        f: InputFile,
        work: Path,
        options: ThumbnailOptions,
        progress: Progress,
    ) -> tuple[list[OutFile], list[dict[str, str]]]:
        p = task.payload
        out_fmt = p["output_format"]
        src, src_fmt = checked_input(rt, f, work, p.get("input_format"))
        hops = self.planned(rt.registry, task.routes, src_fmt, p)
        if hops is None:
            raise PermanentError(
                f"No thumbnail can be made from {src_fmt}", code="INVALID_CONVERSION_TYPE"
            )
        if hops:  # bring it to an image, a PDF or a video first; its first file (page) will do
            defaults = hops[-1].engine.descriptor.options()
            src = run_hops(hops, src, work, defaults, lambda x: progress(x / 2))[0]
            src_fmt = hops[-1].dst
        dst = work / f"thumbnail.{out_fmt}"
        made = rt.registry.engine("thumbnail").convert(
            src, dst, src_fmt, out_fmt, options, lambda x: progress(0.5 + x / 2)
        ) or [dst]
        for path in made:
            check_output("thumbnail", out_fmt, path)
        names = names_for(output_name(p, f, out_fmt), len(made))
        route = [*route_summary(hops), {"from": src_fmt, "to": out_fmt, "engine": "thumbnail"}]
        return [keep(rt, task, path, n) for path, n in zip(made, names, strict=True)], route
