"""The shape of operations that run one engine over each input file in its own format and
keep every file it makes (optimize, split pages, rotate pages)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, ClassVar

from appliance.conversions.files import safe_filename
from appliance.conversions.operation import (
    Errors,
    Operation,
    PlannedTask,
    Progress,
    check_inputs_are,
    check_options,
)
from appliance.conversions.runtime import Runtime
from appliance.conversions.task import Outcome, OutFile, Task
from appliance.conversions.work import check_output, checked_input, each_input, keep, names_for
from appliance.engines.registry import Registry
from appliance.errors import PermanentError
from appliance.security import sealing


class PerInputOperation(Operation):
    """An engine by id (``formats.engine``) over each input, output in the input's format
    (or ``formats.outputs[0]``), named as the input (numbered when it makes several)."""

    # whether the task's other fields are the engine's options (else: its defaults)
    takes_options: ClassVar[bool] = True
    # the format every input is taken as (None: declared, else by its name or content)
    input_format: ClassVar[str | None] = None

    def check(
        self, task: PlannedTask, formats: list[str | None], registry: Registry, errors: Errors
    ) -> None:
        super().check(task, formats, registry, errors)
        check_inputs_are(self, task, formats, registry, errors)
        if self.takes_options:
            check_options(self, task, registry, errors)
        assert self.formats is not None
        known = next(iter({f for f in formats if f}), None)
        task.output_format = self.formats.outputs[0] if self.formats.outputs else known

    def engine_options(self, rt: Runtime, task: Task) -> Any:
        """The engine's options from the task's other fields (validated again: the job's
        checks ran in the API, which may run another version)."""
        if not self.takes_options:
            return self.options_schema(rt.registry)()
        try:
            return self.options(rt.registry, opened_payload(rt, task))
        except Exception as exc:
            raise PermanentError(f"Invalid option: {exc}", code="INVALID_OPTIONS") from exc

    def run(self, rt: Runtime, task: Task, progress: Progress) -> Outcome:
        assert self.formats is not None and self.formats.engine
        engine = rt.registry.engine(self.formats.engine)
        options = self.engine_options(rt, task)
        declared = self.input_format or task.payload.get("input_format")
        outputs: list[OutFile] = []
        with tempfile.TemporaryDirectory(dir=rt.work_root()) as tmp:
            for i, f, step in each_input(task.input_files(), progress):
                work = Path(tmp) / str(i)
                src, fmt = checked_input(rt, f, work, declared)
                out_fmt = self.formats.outputs[0] if self.formats.outputs else fmt
                dst = work / f"output.{out_fmt}"
                made = engine.convert(src, dst, fmt, out_fmt, options, step) or [dst]
                for path in made:
                    check_output(engine.descriptor.id, out_fmt, path)
                names = names_for(safe_filename(f.filename), len(made))
                outputs += [keep(rt, task, path, n) for path, n in zip(made, names, strict=True)]
        outcome = Outcome.of_files(outputs)
        outcome.engine = (engine.descriptor.id, engine.descriptor.version())
        return outcome


def opened_payload(rt: Runtime, task: Task) -> dict[str, Any]:
    """The task's payload with its sealed secret fields (``Operation.secret_fields``: a
    password the engine needs) opened again; the payload itself when it has none."""
    if sealing.SEALED not in task.payload:
        return task.payload
    key = sealing.derive_key(rt.settings.signing_key())
    rest = {k: v for k, v in task.payload.items() if k != sealing.SEALED}
    return {**rest, **sealing.unseal(task.payload, key, str(task.id))}
