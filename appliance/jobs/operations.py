"""What each task operation does on a worker. Each returns an ``Outcome`` or raises."""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import msgspec

from appliance.engines import Combiner, Engine
from appliance.engines.formats import mismatch, normalize, sniff_file
from appliance.engines.registry import Hop, route_summary
from appliance.errors import PermanentError
from appliance.jobs import graph
from appliance.jobs.fetch import fetch
from appliance.jobs.files import RESERVE_FILE, Spool, safe_filename, sha256_of, store
from appliance.jobs.runner import Operation, Outcome, OutFile, Runtime
from appliance.metrics import CACHE_LOOKUPS, CONVERSION_DURATION, CONVERSIONS, UPLOAD_BYTES
from appliance.storage import object_key

Progress = Callable[[float], None]


def import_url(rt: Runtime, task: dict[str, Any], progress: Progress) -> Outcome:
    p = task["payload"]
    s = rt.settings
    with Spool(s.data_path / "tmp", s.max_upload_bytes) as spool:
        name = fetch(
            p["url"],
            spool,
            allow_private=s.allow_private_urls,
            timeout=s.fetch_timeout_seconds,
            headers=p.get("headers") or None,
        )
        sha = spool.finish()
        UPLOAD_BYTES.labels("url").inc(spool.size)
        progress(0.8)
        _keep(rt, spool.path, sha, spool.size)
        filename = safe_filename(p.get("filename") or name)
        return Outcome(
            {"files": [{"filename": filename, "size": spool.size}]},
            [OutFile(sha, spool.size, filename)],
        )


def export_url(rt: Runtime, task: dict[str, Any], progress: Progress) -> Outcome:
    ttl = rt.settings.url_ttl_seconds
    files = []
    for f in input_files(task):
        url = rt.storage.download_url(object_key(f["sha256"]), f["filename"], ttl)
        files.append(OutFile(f["sha256"], f["size"], f["filename"], url))
    return Outcome(
        {"files": [{"filename": f.filename, "size": f.size, "url": f.url} for f in files]}, files
    )


def convert(rt: Runtime, task: dict[str, Any], progress: Progress) -> Outcome:
    inputs = input_files(task)
    outputs: list[OutFile] = []
    hops: list[Hop] = []
    cache: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(dir=_work_root(rt)) as tmp:
        for i, f in enumerate(inputs):

            def step(fraction: float, i: int = i) -> None:
                progress((i + fraction) / len(inputs))

            files, hops, entry = _convert_one(rt, task, f, Path(tmp) / str(i), step)
            outputs += files
            cache += [entry] if entry else []
    result = {
        "files": [{"filename": o.filename, "size": o.size} for o in outputs],
        "route": route_summary(hops),
    }
    engine = (
        "+".join(h.engine.descriptor.id for h in hops),
        "+".join(h.engine.descriptor.version() for h in hops),
    )
    return Outcome(result, outputs, engine, cache)


def _convert_one(
    rt: Runtime, task: dict[str, Any], f: dict[str, Any], work: Path, progress: Progress
) -> tuple[list[OutFile], list[Hop], dict[str, Any] | None]:
    """One input through its route: the files made, the route, and the conversion cache's
    entry for them (recorded with the task's end), if any."""
    p = task["payload"]
    out_fmt = p["output_format"]
    src, src_fmt, seen = _fetch_input(rt, f, work, p.get("input_format"))
    options = {k: v for k, v in p.items() if k not in graph.CONVERT_KEYS}
    hops, parsed = _plan(rt, src_fmt, out_fmt, options)
    if seen is not None:
        src_fmt, hops, parsed = _real_type(rt, f["filename"], src_fmt, seen, hops, out_fmt, options)
    src = _with_extension(src, src_fmt)
    filename = safe_filename(p.get("filename") or f"{Path(f['filename']).stem}.{out_fmt}")
    versions = "+".join(f"{h.engine.descriptor.id}:{h.engine.descriptor.version()}" for h in hops)
    cache_key = (f["sha256"], out_fmt, _options_hash(parsed), versions)
    hit = _cache_lookup(rt, cache_key)
    if hit is not None and rt.storage.exists(object_key(hit[0])):
        CACHE_LOOKUPS.labels("hit").inc()
        return [OutFile(hit[0], hit[1], filename)], hops, None
    CACHE_LOOKUPS.labels("miss").inc()
    paths = _run_hops(hops, src, work, parsed, progress)
    outputs = []
    for n, path in enumerate(paths, start=1):
        sha, size = sha256_of(path)
        if size == 0:
            raise PermanentError("The conversion produced an empty file", code="CONVERSION_FAILED")
        _keep(rt, path, sha, size)
        name = filename if len(paths) == 1 else _numbered(filename, n)
        outputs.append(OutFile(sha, size, name))
    if len(outputs) != 1:  # the cache holds single results; page sets are converted again
        return outputs, hops, None
    entry = dict(zip(CACHE_KEY, cache_key, strict=True))
    return outputs, hops, entry | {"output_sha256": outputs[0].sha256, "size": outputs[0].size}


def _fetch_input(
    rt: Runtime, f: dict[str, Any], work: Path, declared: str | None
) -> tuple[Path, str, str | None]:
    """Downloads the input into ``work`` (made here) as ``input``, never named after the
    client's file name, and finds its format: declared, else the name's extension, else
    sniffed. The third value is the type the content shows when it is not that format."""
    work.mkdir(parents=True, exist_ok=True)
    src = work / "input"
    rt.storage.get_to_path(object_key(f["sha256"]), src)
    src_fmt = declared or graph.extension_of(f["filename"]) or sniff_file(src)
    if src_fmt is None:
        raise PermanentError(
            f"The format of {f['filename']} could not be determined", code="INVALID_INPUT_FILE"
        )
    src_fmt = normalize(src_fmt)
    return src, src_fmt, mismatch(src_fmt, src)


def _checked_input(
    rt: Runtime, f: dict[str, Any], work: Path, declared: str | None
) -> tuple[Path, str]:
    """The input as ``_fetch_input`` gives it; content of another type is an invalid input."""
    src, src_fmt, seen = _fetch_input(rt, f, work, declared)
    if seen is not None:
        raise _not_what_it_says(f["filename"], src_fmt, seen)
    return _with_extension(src, src_fmt), src_fmt


def _with_extension(src: Path, fmt: str) -> Path:
    """``input`` renamed ``input.<fmt>``: engines may go by the extension."""
    if re.fullmatch(r"[a-z0-9]{1,10}", fmt):
        return src.rename(src.with_name(f"input.{fmt}"))
    return src


def _not_what_it_says(filename: str, declared: str, seen: str) -> PermanentError:
    return PermanentError(
        f"The content of {filename} is not {declared} (it looks like: {seen})",
        code="INVALID_INPUT_FILE",
    )


def _plan(
    rt: Runtime, src_fmt: str, out_fmt: str, options: dict[str, Any]
) -> tuple[list[Hop], Any]:
    try:
        return rt.registry.plan(src_fmt, out_fmt, options)
    except Exception as exc:
        raise PermanentError(str(exc), code="INVALID_CONVERSION_TYPE") from exc


def _real_type(
    rt: Runtime,
    filename: str,
    declared: str,
    seen: str,
    hops: list[Hop],
    out_fmt: str,
    options: dict[str, Any],
) -> tuple[str, list[Hop], Any]:
    """The content is not the declared format. If it is one the declared route's first engine
    takes as well (a PNG named .jpg, for libvips), convert it as what it is; otherwise the
    input is invalid: an engine is never handed a file it was not meant to parse."""
    try:
        real_hops, parsed = rt.registry.plan(seen, out_fmt, options)
    except Exception:
        real_hops = []
    if real_hops and real_hops[0].engine.descriptor.id == hops[0].engine.descriptor.id:
        return seen, real_hops, parsed
    raise _not_what_it_says(filename, declared, seen)


def _numbered(filename: str, n: int) -> str:
    stem, dot, ext = filename.rpartition(".")
    return f"{stem}-{n}.{ext}" if dot else f"{filename}-{n}"


def _run_hops(
    hops: list[Hop], src: Path, work: Path, options: Any, progress: Progress
) -> list[Path]:
    """Run the route; an engine that makes several files (pages) fans out: each of them goes
    through the rest of the route."""
    current = [src]
    for n, hop in enumerate(hops):
        last = n == len(hops) - 1
        hop_options = options if last else hop.engine.descriptor.options()

        def step(fraction: float, n: int = n) -> None:
            progress((n + fraction) / len(hops))

        produced: list[Path] = []
        for k, path in enumerate(current):
            dst = work / f"hop{n}-{k}.{hop.dst}"
            made = _timed_convert(hop, path, dst, hop_options, step)
            produced += made if made else [dst]
        for out in produced:
            if not out.is_file() or out.stat().st_size == 0:
                raise PermanentError(
                    f"{hop.engine.descriptor.id} produced no {hop.dst} output",
                    code="CONVERSION_FAILED",
                )
            if mismatch(hop.dst, out) is not None:
                raise PermanentError(
                    f"{hop.engine.descriptor.id} produced output that is not {hop.dst}",
                    code="CONVERSION_FAILED",
                )
        current = produced
    return current


def _timed_convert(
    hop: Hop, src: Path, dst: Path, options: Any, progress: Progress
) -> list[Path] | None:
    """One engine run, counted and timed per engine and format pair."""
    labels = (hop.engine.descriptor.id, hop.src, hop.dst)
    start = time.perf_counter()
    try:
        made = hop.engine.convert(src, dst, hop.src, hop.dst, options, progress)
    except BaseException:
        CONVERSIONS.labels(*labels, "error").inc()
        raise
    CONVERSION_DURATION.labels(*labels).observe(time.perf_counter() - start)
    CONVERSIONS.labels(*labels, "ok").inc()
    return made


def _keep(rt: Runtime, path: Path, sha: str, size: int) -> None:
    with rt.pool.connection() as conn:
        conn.execute(RESERVE_FILE, (sha, size))
    store(rt.storage, path, sha, consume=True)


# conversion_cache's key columns, in the order of _convert_one's cache_key
CACHE_KEY = ("input_sha256", "output_format", "options_hash", "engine_version")


def _options_hash(options: Any) -> str:
    canonical = json.dumps(msgspec.to_builtins(options), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _cache_lookup(rt: Runtime, key: tuple[str, str, str, str]) -> tuple[str, int] | None:
    with rt.pool.connection() as conn:
        row = conn.execute(
            "UPDATE conversion_cache SET last_hit_at = now() WHERE input_sha256 = %s AND"
            " output_format = %s AND options_hash = %s AND engine_version = %s"
            " RETURNING output_sha256, size",
            key,
        ).fetchone()
    return (row["output_sha256"], row["size"]) if row else None


def input_files(task: dict[str, Any]) -> list[dict[str, Any]]:
    """The files of the tasks this one takes, in input order (read by its claim);
    NO_INPUT_FILES if they made none."""
    inputs: list[dict[str, Any]] = task["inputs"]
    if not inputs:
        raise PermanentError("The input tasks produced no files", code="NO_INPUT_FILES")
    return inputs


def _work_root(rt: Runtime) -> Path:
    root = rt.settings.data_path / "work"
    root.mkdir(parents=True, exist_ok=True)
    return root


# -- merge, optimize, split: one engine by id over the task's input files ----------------------
MERGE_ENGINE = "pdf-merge"
OPTIMIZE_ENGINE = "optimize"
SPLIT_ENGINE = "pdf-split"


def merge(rt: Runtime, task: dict[str, Any], progress: Progress) -> Outcome:
    """The inputs, each routed to PDF unless it is one already, merged into one PDF in order."""
    inputs = input_files(task)
    engine = cast(Combiner, rt.registry.engine(MERGE_ENGINE))
    routes: list[dict[str, str]] = []
    with tempfile.TemporaryDirectory(dir=_work_root(rt)) as tmp:
        pdfs: list[Path] = []
        for i, f in enumerate(inputs):
            src, fmt = _checked_input(rt, f, Path(tmp) / str(i), None)
            if fmt == "pdf":
                pdfs.append(src)
                continue
            hops = rt.registry.route(fmt, "pdf")
            if hops is None:
                raise PermanentError(
                    f"{f['filename']} ({fmt}) cannot be converted to pdf for merging",
                    code="INVALID_CONVERSION_TYPE",
                )
            routes += route_summary(hops)

            def step(fraction: float, i: int = i) -> None:
                progress(0.8 * (i + fraction) / len(inputs))

            options = hops[-1].engine.descriptor.options()
            pdfs += _run_hops(hops, src, Path(tmp) / str(i), options, step)
        merged = Path(tmp) / "merged.pdf"
        engine.combine(
            pdfs, merged, "pdf", engine.descriptor.options(), lambda f: progress(0.8 + 0.2 * f)
        )
        _check_output(engine.descriptor.id, "pdf", merged)
        name = task["payload"].get("filename") or f"{Path(inputs[0]['filename']).stem}.pdf"
        out = _keep_output(rt, merged, safe_filename(name))
    result = {"files": [{"filename": out.filename, "size": out.size}], "route": routes}
    return Outcome(result, [out], (engine.descriptor.id, engine.descriptor.version()))


def optimize(rt: Runtime, task: dict[str, Any], progress: Progress) -> Outcome:
    """Each input (pdf, jpg, png) made smaller, same format and name (never larger)."""
    payload = task["payload"]
    engine = rt.registry.engine(OPTIMIZE_ENGINE)
    options = _engine_options(engine, payload, graph.OPTIMIZE_KEYS)
    return _per_input(rt, task, engine, options, payload.get("input_format"), progress)


def split_pages(rt: Runtime, task: dict[str, Any], progress: Progress) -> Outcome:
    """One PDF per page of each input PDF (CloudConvert's ``pdf/split-pages``)."""
    engine = rt.registry.engine(SPLIT_ENGINE)
    options = engine.descriptor.options()
    return _per_input(rt, task, engine, options, "pdf", progress)


def _per_input(
    rt: Runtime,
    task: dict[str, Any],
    engine: Engine,
    options: Any,
    declared: str | None,
    progress: Progress,
) -> Outcome:
    """Run ``engine`` over each input file in its own format; keep every file it makes."""
    inputs = input_files(task)
    outputs: list[OutFile] = []
    with tempfile.TemporaryDirectory(dir=_work_root(rt)) as tmp:
        for i, f in enumerate(inputs):
            work = Path(tmp) / str(i)
            src, fmt = _checked_input(rt, f, work, declared)

            def step(fraction: float, i: int = i) -> None:
                progress((i + fraction) / len(inputs))

            dst = work / f"output.{fmt}"
            made = engine.convert(src, dst, fmt, fmt, options, step) or [dst]
            for n, path in enumerate(made, start=1):
                _check_output(engine.descriptor.id, fmt, path)
                name = safe_filename(f["filename"])
                outputs.append(
                    _keep_output(rt, path, _numbered(name, n) if len(made) > 1 else name)
                )
    return Outcome(
        {"files": [{"filename": o.filename, "size": o.size} for o in outputs]},
        outputs,
        (engine.descriptor.id, engine.descriptor.version()),
    )


def _engine_options(engine: Engine, payload: dict[str, Any], task_keys: set[str]) -> Any:
    """The engine's options from the task's other fields (validated again: the job's checks
    ran in the API, which may run another version)."""
    fields = {k: v for k, v in payload.items() if k not in task_keys}
    try:
        return msgspec.convert(fields, engine.descriptor.options)
    except msgspec.ValidationError as exc:
        raise PermanentError(f"Invalid option: {exc}", code="INVALID_OPTIONS") from exc


def _check_output(engine_id: str, fmt: str, path: Path) -> None:
    if not path.is_file() or path.stat().st_size == 0:
        raise PermanentError(f"{engine_id} produced no {fmt} output", code="CONVERSION_FAILED")
    if mismatch(fmt, path) is not None:
        raise PermanentError(
            f"{engine_id} produced output that is not {fmt}", code="CONVERSION_FAILED"
        )


def _keep_output(rt: Runtime, path: Path, filename: str) -> OutFile:
    sha, size = sha256_of(path)
    _keep(rt, path, sha, size)
    return OutFile(sha, size, filename)


OPERATIONS: dict[str, Operation] = {
    "import/url": import_url,
    "convert": convert,
    "export/url": export_url,
    "merge": merge,
    "optimize": optimize,
    "pdf/split-pages": split_pages,
}
