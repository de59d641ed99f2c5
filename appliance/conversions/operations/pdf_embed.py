"""``pdf/embed``: each input PDF with the files of the ``attachments`` task (or list of
tasks) attached, as a reader's attachments pane lists them, each under its own file name; by
the sandboxed ``pdf-embed`` engine. Not one of CloudConvert's operations: Gotenberg's
``embeds`` run it, and a job may name it like any other.

Attachments may be files of any type: they are stored in the PDF as they are, never opened."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import cast

from appliance.conversions.files import safe_filename, unique_names
from appliance.conversions.operation import Errors, Formats, PlannedTask, Progress
from appliance.conversions.operations.per_input import PerInputOperation
from appliance.conversions.runtime import Runtime
from appliance.conversions.task import InputFile, Outcome, OutFile, Task
from appliance.conversions.work import check_output, checked_input, each_input, keep
from appliance.engines import Combiner
from appliance.engines.pdfedit import EmbedOptions
from appliance.engines.registry import Registry
from appliance.errors import PermanentError
from appliance.storage import object_key


class PdfEmbed(PerInputOperation):
    name = "pdf/embed"
    required = ("input", "attachments")
    formats = Formats(("pdf",), ("pdf",), "pdf-embed")
    input_format = "pdf"
    ref_fields = ("attachments",)
    ref_lists = frozenset({"attachments"})
    takes_options = False  # the names come from the files, not the client

    def check(
        self, task: PlannedTask, formats: list[str | None], registry: Registry, errors: Errors
    ) -> None:
        # the attachments' formats come last and may be anything
        super().check(task, formats[: _input_count(task.payload)], registry, errors)

    def run(self, rt: Runtime, task: Task, progress: Progress) -> Outcome:
        assert self.formats is not None and self.formats.engine
        engine = cast(Combiner, rt.registry.engine(self.formats.engine))
        pdfs, attached = _split(task)
        options = EmbedOptions(names=unique_names([safe_filename(f.filename) for f in attached]))
        outputs: list[OutFile] = []
        with tempfile.TemporaryDirectory(dir=rt.work_root()) as tmp:
            files = []
            for i, f in enumerate(attached):
                path = Path(tmp) / f"attachment-{i}"
                rt.storage.get_to_path(object_key(f.sha256), path)
                files.append(path)
            for i, f, step in each_input(pdfs, progress):
                work = Path(tmp) / str(i)
                src, _ = checked_input(rt, f, work, "pdf")
                dst = work / "output.pdf"
                engine.combine([src, *files], dst, "pdf", options, step)
                check_output(engine.descriptor.id, "pdf", dst)
                outputs.append(keep(rt, task, dst, safe_filename(f.filename)))
        outcome = Outcome.of_files(outputs)
        outcome.engine = (engine.descriptor.id, engine.descriptor.version())
        return outcome


def _input_count(payload: dict) -> int:
    refs = payload.get("input")
    return 1 if isinstance(refs, str) else len(refs) if isinstance(refs, list) else 0


def _split(task: Task) -> tuple[list[InputFile], list[InputFile]]:
    """The PDFs (the ``input`` tasks' files) and the files to attach (the ``attachments``
    tasks', which the task depends on after its inputs)."""
    attaching = set(task.depends_on[_input_count(task.payload) :])
    files = task.input_files()
    pdfs = [f for f in files if f.task_id not in attaching]
    attached = [f for f in files if f.task_id in attaching]
    if not pdfs:
        raise PermanentError("The input tasks produced no files", code="NO_INPUT_FILES")
    if not attached:
        raise PermanentError("The attachments tasks produced no files", code="NO_INPUT_FILES")
    return pdfs, attached
