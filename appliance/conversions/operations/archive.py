"""The `archive` task: the input tasks' files in one zip, tar or tar.gz.

Each file streams from storage into the archive one chunk at a time (memory stays at one
chunk whatever the sizes); the archive is written to the worker's work directory and stored
like any output. Member names are the files' names made safe (no directories, no ``..``, no
control characters) and unique. The bytes are only copied, never parsed, so this runs in the
worker.
"""

from __future__ import annotations

import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

from appliance.conversions.files import safe_filename
from appliance.conversions.operation import Errors, Formats, Operation, PlannedTask, Progress
from appliance.conversions.runtime import Runtime
from appliance.conversions.task import Outcome, Task
from appliance.conversions.work import keep
from appliance.engines.formats import normalize
from appliance.engines.registry import Registry
from appliance.storage import object_key

FORMATS = ("zip", "tar", "tar.gz")


class Archive(Operation):
    name = "archive"
    required = ("input", "output_format")
    fields = Operation.fields | {"output_format"}
    formats = Formats(None, FORMATS, None)

    def check(
        self, task: PlannedTask, formats: list[str | None], registry: Registry, errors: Errors
    ) -> None:
        p, key = task.payload, task.key
        out = normalize(str(p.get("output_format", "")))
        out = {"tgz": "tar.gz"}.get(out, out)
        p["output_format"] = task.output_format = out
        if out not in FORMATS:
            errors.add(f"{key}.output_format", f"must be one of {', '.join(FORMATS)}")
        if not task.depends_on:
            errors.add(f"{key}.input", "archive needs at least one input task")

    def run(self, rt: Runtime, task: Task, progress: Progress) -> Outcome:
        fmt = task.payload["output_format"]
        files = task.input_files()
        names = member_names([f.filename for f in files])
        filename = safe_filename(task.payload.get("filename") or f"archive.{fmt}")
        with tempfile.TemporaryDirectory(dir=rt.work_root()) as tmp:
            out = Path(tmp) / f"archive.{fmt}"
            members = [
                (name, f.size, _reader(rt, f.sha256)) for name, f in zip(names, files, strict=True)
            ]
            if fmt == "zip":
                _zip(out, members, progress)
            else:
                _tar(out, members, "w:gz" if fmt == "tar.gz" else "w", progress)
            return Outcome.of_files([keep(rt, task, out, filename)])


def member_names(filenames: list[str]) -> list[str]:
    """Safe, unique member names: ``a.png``, ``a-2.png``, ... in the inputs' order."""
    taken: set[str] = set()
    out = []
    for raw in filenames:
        name = safe_filename(raw)
        stem, dot, ext = name.rpartition(".")
        if not dot:
            stem, ext = name, ""
        candidate, n = name, 2
        while candidate.lower() in taken:
            candidate = f"{stem}-{n}.{ext}" if ext else f"{stem}-{n}"
            n += 1
        taken.add(candidate.lower())
        out.append(candidate)
    return out


Member = tuple[str, int, Callable[[], Iterator[bytes]]]  # name, size, its bytes


def _reader(rt: Runtime, sha256: str) -> Callable[[], Iterator[bytes]]:
    """Opens the stored file only when its turn comes (one open download at a time)."""
    return lambda: rt.storage.iter_bytes(object_key(sha256))


def _zip(out: Path, members: list[Member], progress: Progress) -> None:
    now = time.localtime()[:6]
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as z:
        for n, (name, size, chunks) in enumerate(members, start=1):
            info = zipfile.ZipInfo(name, date_time=now)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16  # a plain, readable file wherever it is unpacked
            with z.open(info, "w", force_zip64=size > 2**31) as member:
                for chunk in chunks():
                    member.write(chunk)
            progress(n / len(members))


def _tar(out: Path, members: list[Member], mode: str, progress: Progress) -> None:
    now = time.time()
    with tarfile.open(out, mode, format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
        for n, (name, size, chunks) in enumerate(members, start=1):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = size, 0o644, now
            tar.addfile(info, _Chunks(chunks()))
            progress(n / len(members))


class _Chunks:
    """A file-like ``read(n)`` over an iterator of byte chunks (what tarfile copies from)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks
        self.buffer = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self.buffer) < size:
            chunk = next(self.chunks, None)
            if chunk is None:
                break
            self.buffer += chunk
        if size < 0:
            size = len(self.buffer)
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data
