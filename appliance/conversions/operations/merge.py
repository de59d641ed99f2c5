"""``merge``: the inputs, each routed to PDF unless it is one already, as one PDF in order."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import cast

from appliance.conversions.files import safe_filename
from appliance.conversions.operation import (
    Errors,
    Formats,
    Operation,
    PlannedTask,
    Progress,
    heavier,
    input_queue,
    to_pdf,
)
from appliance.conversions.operations.convert import normalize_out
from appliance.conversions.runtime import Runtime
from appliance.conversions.task import Outcome, Task
from appliance.conversions.work import check_output, checked_input, keep, run_hops
from appliance.engines import Combiner, QueueClass
from appliance.engines.registry import Registry, route_summary
from appliance.errors import PermanentError


class Merge(Operation):
    name = "merge"
    required = ("input", "output_format")
    fields = Operation.fields | {"output_format"}
    formats = Formats(("pdf",), ("pdf",), "pdf-merge", to_pdf)
    routed = True

    def check(
        self, task: PlannedTask, formats: list[str | None], registry: Registry, errors: Errors
    ) -> None:
        """Output pdf; every input whose format is known now must have a route to pdf."""
        assert self.formats is not None
        p, key = task.payload, task.key
        makes = ", ".join(self.formats.outputs or ())
        if normalize_out(p) not in (self.formats.outputs or ()):
            errors.add(f"{key}.output_format", f"merge makes {makes}; allowed: {makes}")
        for extra in sorted(set(p) - self.fields):
            errors.add(f"{key}.{extra}", f"unknown field for merge: {extra}")
        task.output_format = "pdf"
        queue: QueueClass = "light"
        for fmt in sorted({f for f in formats if f}):
            hops = self.route(registry, fmt, p)
            if hops is None:
                errors.add(f"{key}.input", f"cannot convert {fmt} to pdf for merging")
            else:
                task.plan_route(fmt, hops)
                queue = heavier(queue, input_queue(registry, self, fmt, hops))
        task.queue = queue

    def run(self, rt: Runtime, task: Task, progress: Progress) -> Outcome:
        assert self.formats is not None and self.formats.engine
        inputs = task.input_files()
        engine = cast(Combiner, rt.registry.engine(self.formats.engine))
        routes: list[dict[str, str]] = []
        with tempfile.TemporaryDirectory(dir=rt.work_root()) as tmp:
            pdfs: list[Path] = []
            for i, f in enumerate(inputs):
                work = Path(tmp) / str(i)
                src, fmt = checked_input(rt, f, work, None)
                if fmt == "pdf":
                    pdfs.append(src)
                    continue
                hops = self.planned(rt.registry, task.routes, fmt, task.payload)
                if hops is None:
                    raise PermanentError(
                        f"{f.filename} ({fmt}) cannot be converted to pdf for merging",
                        code="INVALID_CONVERSION_TYPE",
                    )
                routes += route_summary(hops)

                def step(fraction: float, i: int = i) -> None:
                    progress(0.8 * (i + fraction) / len(inputs))

                pdfs += run_hops(hops, src, work, hops[-1].engine.descriptor.options(), step)
            merged = Path(tmp) / "merged.pdf"
            engine.combine(
                pdfs, merged, "pdf", engine.descriptor.options(), lambda f: progress(0.8 + 0.2 * f)
            )
            check_output(engine.descriptor.id, "pdf", merged)
            name = task.payload.get("filename") or f"{Path(inputs[0].filename).stem}.pdf"
            out = keep(rt, task, merged, safe_filename(name))
        outcome = Outcome.of_files([out], route=routes)
        outcome.engine = (engine.descriptor.id, engine.descriptor.version())
        return outcome
