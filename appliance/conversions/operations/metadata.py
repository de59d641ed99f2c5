"""``metadata``: each input file's record (exiftool's keys), read by the sandboxed
``metadata`` engine; the worker only reads back the small JSON it wrote."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from appliance.conversions.operation import Formats, Operation, Progress
from appliance.conversions.runtime import Runtime
from appliance.conversions.task import InputFile, Outcome, Task
from appliance.conversions.work import checked_input, each_input
from appliance.errors import PermanentError

METADATA_MAX_BYTES = 1 << 20  # the metadata engine's JSON; anything larger is refused


class Metadata(Operation):
    name = "metadata"
    formats = Formats(None, (), "metadata")

    def run(self, rt: Runtime, task: Task, progress: Progress) -> Outcome:
        """``result.metadata`` is the first file's record (CloudConvert's shape for its one
        input), ``result.files`` has each file's name, size and record, in input order."""
        files = []
        with tempfile.TemporaryDirectory(dir=rt.work_root()) as tmp:
            for i, f, step in each_input(task.input_files(), progress):
                found = self._one(rt, task.payload, f, Path(tmp) / str(i), step)
                files.append({"filename": f.filename, "size": f.size, "metadata": found})
        return Outcome({"metadata": files[0]["metadata"], "files": files})

    def _one(
        self, rt: Runtime, p: dict[str, Any], f: InputFile, work: Path, progress: Progress
    ) -> dict[str, Any]:
        src, src_fmt = checked_input(rt, f, work, p.get("input_format"))
        dst = work / "metadata.json"
        engine = rt.registry.engine("metadata")
        engine.convert(src, dst, src_fmt, "json", engine.descriptor.options(), progress)
        if dst.stat().st_size > METADATA_MAX_BYTES:
            raise PermanentError("The metadata is too large", code="CONVERSION_FAILED")
        found = json.loads(dst.read_bytes())
        if not isinstance(found, dict):
            raise PermanentError("The metadata engine gave no record", code="CONVERSION_FAILED")
        return {"FileName": f.filename, "FileSize": f.size, **found}
