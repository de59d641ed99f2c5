"""What each task operation does on a worker. Each returns an ``Outcome`` or raises."""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

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
    for f in _input_files(rt, task):
        url = rt.storage.download_url(object_key(f["sha256"]), f["filename"], ttl)
        files.append(OutFile(f["sha256"], f["size"], f["filename"], url))
    if not files:
        raise PermanentError("The input tasks produced no files", code="NO_INPUT_FILES")
    return Outcome(
        {"files": [{"filename": f.filename, "size": f.size, "url": f.url} for f in files]}, files
    )


def convert(rt: Runtime, task: dict[str, Any], progress: Progress) -> Outcome:
    inputs = _input_files(rt, task)
    if not inputs:
        raise PermanentError("The input tasks produced no files", code="NO_INPUT_FILES")
    outputs: list[OutFile] = []
    hops: list[Hop] = []
    with tempfile.TemporaryDirectory(dir=_work_root(rt)) as tmp:
        for i, f in enumerate(inputs):

            def step(fraction: float, i: int = i) -> None:
                progress((i + fraction) / len(inputs))

            files, hops = _convert_one(rt, task, f, Path(tmp) / str(i), step)
            outputs += files
    result = {
        "files": [{"filename": o.filename, "size": o.size} for o in outputs],
        "route": route_summary(hops),
    }
    task_engine = "+".join(h.engine.descriptor.id for h in hops)
    _record_engine(
        rt, task["id"], task_engine, "+".join(h.engine.descriptor.version() for h in hops)
    )
    return Outcome(result, outputs)


def _convert_one(
    rt: Runtime, task: dict[str, Any], f: dict[str, Any], work: Path, progress: Progress
) -> tuple[list[OutFile], list[Hop]]:
    p = task["payload"]
    out_fmt = p["output_format"]
    work.mkdir()
    src = work / ("input" + Path(f["filename"]).suffix.lower())
    rt.storage.get_to_path(object_key(f["sha256"]), src)
    src_fmt = p.get("input_format") or graph.extension_of(f["filename"]) or sniff_file(src)
    if src_fmt is None:
        raise PermanentError(
            f"The format of {f['filename']} could not be determined", code="INVALID_INPUT_FILE"
        )
    src_fmt = normalize(src_fmt)
    seen = mismatch(src_fmt, src)
    if seen is not None:
        raise PermanentError(
            f"The content of {f['filename']} is not {src_fmt} (it looks like: {seen})",
            code="INVALID_INPUT_FILE",
        )
    options = {k: v for k, v in p.items() if k not in graph.CONVERT_KEYS}
    try:
        hops, parsed = rt.registry.plan(src_fmt, out_fmt, options)
    except Exception as exc:
        raise PermanentError(str(exc), code="INVALID_CONVERSION_TYPE") from exc
    filename = safe_filename(p.get("filename") or f"{Path(f['filename']).stem}.{out_fmt}")
    versions = "+".join(f"{h.engine.descriptor.id}:{h.engine.descriptor.version()}" for h in hops)
    cache_key = (f["sha256"], out_fmt, _options_hash(parsed), versions)
    hit = _cache_lookup(rt, cache_key)
    if hit is not None and rt.storage.exists(object_key(hit[0])):
        CACHE_LOOKUPS.labels("hit").inc()
        return [OutFile(hit[0], hit[1], filename)], hops
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
    if len(outputs) == 1:  # the cache holds single results; page sets are converted again
        _cache_store(rt, cache_key, outputs[0].sha256, outputs[0].size)
    return outputs, hops


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


def _cache_store(rt: Runtime, key: tuple[str, str, str, str], sha: str, size: int) -> None:
    with rt.pool.connection() as conn:
        conn.execute(
            "INSERT INTO conversion_cache (input_sha256, output_format, options_hash,"
            " engine_version, output_sha256, size) VALUES (%s, %s, %s, %s, %s, %s)"
            " ON CONFLICT DO NOTHING",
            (*key, sha, size),
        )


def _record_engine(rt: Runtime, task_id: Any, engine: str, version: str) -> None:
    with rt.pool.connection() as conn:
        conn.execute(
            "UPDATE tasks SET engine = %s, engine_version = %s WHERE id = %s",
            (engine, version, task_id),
        )


def _input_files(rt: Runtime, task: dict[str, Any]) -> list[dict[str, Any]]:
    with rt.pool.connection() as conn:
        return conn.execute(
            "SELECT f.sha256, f.filename, f.size FROM task_files f"
            " WHERE f.task_id = ANY(%s)"
            " ORDER BY array_position(%s, f.task_id), f.position",
            (task["depends_on"], task["depends_on"]),
        ).fetchall()


def _work_root(rt: Runtime) -> Path:
    root = rt.settings.data_path / "work"
    root.mkdir(parents=True, exist_ok=True)
    return root


OPERATIONS: dict[str, Operation] = {
    "import/url": import_url,
    "convert": convert,
    "export/url": export_url,
}
