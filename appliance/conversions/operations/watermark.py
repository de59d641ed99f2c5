"""``watermark``: each input PDF (or png, jpg, webp picture) with a ``text`` or an ``image``
stamped on its pages (all, or ``pages``), ``layer`` above or below their content, placed by
``position_vertical`` / ``position_horizontal`` and margins, turned by ``rotation``, at
``opacity`` percent; by the sandboxed ``watermark`` engine. ``image`` names another task of
the job whose first file (png, jpg, webp, tiff, gif, bmp) is the stamp."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import cast

from appliance.conversions.files import safe_filename
from appliance.conversions.operation import Errors, Formats, PlannedTask, Progress, normalized
from appliance.conversions.operations.per_input import PerInputOperation
from appliance.conversions.runtime import Runtime
from appliance.conversions.task import InputFile, Outcome, OutFile, Task
from appliance.conversions.work import check_output, checked_input, each_input, keep
from appliance.engines import Combiner
from appliance.engines.pdftools import IMAGE_INPUTS
from appliance.engines.registry import Registry
from appliance.engines.watermark_raster import FORMATS as RASTER_FORMATS
from appliance.errors import PermanentError


class Watermark(PerInputOperation):
    name = "watermark"
    formats = Formats(("pdf", *RASTER_FORMATS), None, "watermark")
    ref_fields = ("image",)

    def check(
        self, task: PlannedTask, formats: list[str | None], registry: Registry, errors: Errors
    ) -> None:
        image = task.payload.get("image")
        if isinstance(image, str) and image and formats:  # the image task's format comes last
            image_format = formats[-1]
            formats = formats[:-1]
            if image_format and image_format not in IMAGE_INPUTS:
                errors.add(
                    f"{task.key}.image",
                    f"the watermark image must be one of {', '.join(IMAGE_INPUTS)},"
                    f" not {image_format}",
                )
        declared = normalized(task.payload, "input_format")
        super().check(task, [declared] if declared else formats, registry, errors)

    def run(self, rt: Runtime, task: Task, progress: Progress) -> Outcome:
        assert self.formats is not None and self.formats.engine
        engine = cast(Combiner, rt.registry.engine(self.formats.engine))
        options = self.engine_options(rt, task)
        files, image = _split(task)
        outputs: list[OutFile] = []
        with tempfile.TemporaryDirectory(dir=rt.work_root()) as tmp:
            stamp: list[Path] = []
            if image is not None:
                stamp = [checked_input(rt, image, Path(tmp) / "image", None)[0]]
            declared = task.payload.get("input_format")
            for i, f, step in each_input(files, progress):
                work = Path(tmp) / str(i)
                src, fmt = checked_input(rt, f, work, declared)
                if fmt not in (self.formats.inputs or ()):
                    raise PermanentError(
                        f"watermark takes {', '.join(self.formats.inputs or ())}, not {fmt}",
                        code="INVALID_CONVERSION_TYPE",
                    )
                dst = work / f"output.{fmt}"
                engine.combine([src, *stamp], dst, fmt, options, step)
                check_output(engine.descriptor.id, fmt, dst)
                outputs.append(keep(rt, task, dst, safe_filename(f.filename)))
        outcome = Outcome.of_files(outputs)
        outcome.engine = (engine.descriptor.id, engine.descriptor.version())
        return outcome


def _split(task: Task) -> tuple[list[InputFile], InputFile | None]:
    """The files to stamp, and the image's file (the first its task made) when one is named:
    the image task is the last the task depends on (``Operation.ref_fields``)."""
    files = task.input_files()
    if not task.payload.get("image"):
        return files, None
    image_task = task.depends_on[-1] if task.depends_on else None
    images = [f for f in files if f.task_id == image_task]
    pdfs = [f for f in files if f.task_id != image_task]
    if not images:
        raise PermanentError("The image task produced no file", code="NO_INPUT_FILES")
    if not pdfs:
        raise PermanentError("The input tasks produced no files", code="NO_INPUT_FILES")
    return pdfs, images[0]
