"""The `thumbnail`, `metadata` and `archive` task operations (CloudConvert's task model).

Thumbnail and metadata read untrusted bytes, so they run in the sandboxed engine helpers
(the ``thumbnail`` and ``metadata`` engines), after any conversions the router needs first;
the worker only moves files and reads back the small JSON the metadata engine wrote.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import msgspec

from appliance.engines.formats import mismatch
from appliance.engines.registry import route_summary
from appliance.engines.thumbnail import ThumbnailOptions, thumbnail_route
from appliance.errors import PermanentError
from appliance.jobs import graph
from appliance.jobs.archive import archive
from appliance.jobs.files import safe_filename, sha256_of
from appliance.jobs.operations import (
    Progress,
    _checked_input,
    _keep,
    _numbered,
    _run_hops,
    _work_root,
    input_files,
)
from appliance.jobs.runner import Operation, Outcome, OutFile, Runtime

METADATA_MAX_BYTES = 1 << 20  # the metadata engine's JSON; anything larger is refused


def thumbnail(rt: Runtime, task: dict[str, Any], progress: Progress) -> Outcome:
    """``count`` thumbnails per input file (pages of a PDF, frames of a video; an image gives
    one); the route (conversions first, then the thumbnail) is in the result like a convert
    task's."""
    p = task["payload"]
    options = msgspec.convert(
        {k: v for k, v in p.items() if k not in graph.CONVERT_KEYS}, ThumbnailOptions
    )
    inputs = input_files(task)
    outputs: list[OutFile] = []
    route: list[dict[str, str]] = []
    with tempfile.TemporaryDirectory(dir=_work_root(rt)) as tmp:
        for i, f in enumerate(inputs):

            def step(fraction: float, i: int = i) -> None:
                progress((i + fraction) / len(inputs))

            made, route = _thumbnail_one(rt, p, f, Path(tmp) / str(i), options, step)
            outputs += made
    result = {"files": [{"filename": o.filename, "size": o.size} for o in outputs]}
    return Outcome(result | {"route": route}, outputs)


def _thumbnail_one(
    rt: Runtime,
    p: dict[str, Any],
    f: dict[str, Any],
    work: Path,
    options: ThumbnailOptions,
    progress: Progress,
) -> tuple[list[OutFile], list[dict[str, str]]]:
    out_fmt = p["output_format"]
    src, src_fmt = _fetch(rt, p, f, work)
    hops = thumbnail_route(rt.registry, src_fmt)
    if hops is None:
        raise PermanentError(
            f"No thumbnail can be made from {src_fmt}", code="INVALID_CONVERSION_TYPE"
        )
    if hops:  # bring it to an image, a PDF or a video first; its first file (page) will do
        defaults = hops[-1].engine.descriptor.options()
        src = _run_hops(hops, src, work, defaults, lambda x: progress(x / 2))[0]
        src_fmt = hops[-1].dst
    dst = work / f"thumbnail.{out_fmt}"
    made = rt.registry.engine("thumbnail").convert(
        src, dst, src_fmt, out_fmt, options, lambda x: progress(0.5 + x / 2)
    ) or [dst]
    name = safe_filename(p.get("filename") or f"{Path(f['filename']).stem}.{out_fmt}")
    names = [name] if len(made) == 1 else [_numbered(name, n) for n in range(1, len(made) + 1)]
    route = [*route_summary(hops), {"from": src_fmt, "to": out_fmt, "engine": "thumbnail"}]
    return [_stored(rt, path, out_fmt, n) for path, n in zip(made, names, strict=True)], route


def metadata(rt: Runtime, task: dict[str, Any], progress: Progress) -> Outcome:
    """CloudConvert's metadata task, for every input file: ``result.metadata`` is the first
    one's record (CloudConvert's shape for its one input), ``result.files`` has each file's
    name, size and record, in input order."""
    inputs = input_files(task)
    files = []
    with tempfile.TemporaryDirectory(dir=_work_root(rt)) as tmp:
        for i, f in enumerate(inputs):

            def step(fraction: float, i: int = i) -> None:
                progress((i + fraction) / len(inputs))

            found = _metadata_one(rt, task["payload"], f, Path(tmp) / str(i), step)
            files.append({"filename": f["filename"], "size": f["size"], "metadata": found})
    return Outcome({"metadata": files[0]["metadata"], "files": files})


def _metadata_one(
    rt: Runtime, p: dict[str, Any], f: dict[str, Any], work: Path, progress: Progress
) -> dict[str, Any]:
    """One file's record (exiftool's keys), read by the metadata engine in its sandbox."""
    src, src_fmt = _fetch(rt, p, f, work)
    dst = work / "metadata.json"
    engine = rt.registry.engine("metadata")
    engine.convert(src, dst, src_fmt, "json", engine.descriptor.options(), progress)
    if dst.stat().st_size > METADATA_MAX_BYTES:
        raise PermanentError("The metadata is too large", code="CONVERSION_FAILED")
    found = json.loads(dst.read_bytes())
    if not isinstance(found, dict):
        raise PermanentError("The metadata engine gave no record", code="CONVERSION_FAILED")
    return {"FileName": f["filename"], "FileSize": f["size"], **found}


def _fetch(rt: Runtime, p: dict[str, Any], f: dict[str, Any], work: Path) -> tuple[Path, str]:
    """The input file on local disk and its format, checked against its content."""
    return _checked_input(rt, f, work, p.get("input_format"))


def _stored(rt: Runtime, path: Path, fmt: str, filename: str) -> OutFile:
    if mismatch(fmt, path) is not None:
        raise PermanentError(f"The thumbnail is not {fmt}", code="CONVERSION_FAILED")
    sha, size = sha256_of(path)
    _keep(rt, path, sha, size)
    return OutFile(sha, size, filename)


DERIVED: dict[str, Operation] = {
    "thumbnail": thumbnail,
    "metadata": metadata,
    "archive": archive,
}
