"""What runs share: an input brought from storage and checked against its content, a route
run hop by hop with every output checked, outputs kept in storage, the conversion cache.

The worker only moves and hashes bytes here; engines parse them, in their sandboxed helpers.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
import time
import uuid
from pathlib import Path
from typing import Any

import msgspec

from appliance.conversions.files import (
    Spool,
    key_owner,
    owned_digest,
    owner,
    safe_filename,
    sha256_of,
    store,
)
from appliance.conversions.operation import Progress
from appliance.conversions.runtime import Runtime
from appliance.conversions.task import InputFile, OutFile, Task
from appliance.db.queries import files as file_rows
from appliance.engines import deadline
from appliance.engines.formats import mismatch, normalize, sniff_file
from appliance.engines.registry import Hop
from appliance.errors import PermanentError
from appliance.metrics import CACHE_LOOKUPS, CONVERSION_DURATION, CONVERSIONS
from appliance.storage import object_key

# conversion_cache's key columns, in the order of ``cache_key``'s tuple
CACHE_KEY = ("input_sha256", "output_format", "options_hash", "engine_version")


def extension_of(name: str | None) -> str | None:
    """The normalized format a file name's extension names, if any."""
    if not name:
        return None
    ext = posixpath.splitext(name)[1]
    return normalize(ext) if ext else None


def fetch_input(
    rt: Runtime, f: InputFile, work: Path, declared: str | None
) -> tuple[Path, str, str | None]:
    """Downloads the input into ``work`` (made here) as ``input``, never named after the
    client's file name, and finds its format: declared, else the name's extension, else
    sniffed. The third value is the type the content shows when it is not that format."""
    work.mkdir(parents=True, exist_ok=True)
    src = work / "input"
    rt.storage.get_to_path(object_key(f.sha256), src)
    src_fmt = declared or extension_of(f.filename) or sniff_file(src)
    if src_fmt is None:
        raise PermanentError(
            f"The format of {f.filename} could not be determined", code="INVALID_INPUT_FILE"
        )
    src_fmt = normalize(src_fmt)
    return src, src_fmt, mismatch(src_fmt, src)


def checked_input(rt: Runtime, f: InputFile, work: Path, declared: str | None) -> tuple[Path, str]:
    """The input as ``fetch_input`` gives it; content of another type is an invalid input."""
    src, src_fmt, seen = fetch_input(rt, f, work, declared)
    if seen is not None:
        raise not_what_it_says(f.filename, src_fmt, seen)
    return with_extension(src, src_fmt), src_fmt


def with_extension(src: Path, fmt: str) -> Path:
    """``input`` renamed ``input.<fmt>``: engines may go by the extension."""
    if re.fullmatch(r"[a-z0-9]{1,10}", fmt):
        return src.rename(src.with_name(f"input.{fmt}"))
    return src


def not_what_it_says(filename: str, declared: str, seen: str) -> PermanentError:
    return PermanentError(
        f"The content of {filename} is not {declared} (it looks like: {seen})",
        code="INVALID_INPUT_FILE",
    )


def numbered(filename: str, n: int) -> str:
    stem, dot, ext = filename.rpartition(".")
    return f"{stem}-{n}.{ext}" if dot else f"{filename}-{n}"


def names_for(filename: str, count: int) -> list[str]:
    """``filename`` for one output; ``name-1.ext``, ``name-2.ext``, ... for several."""
    return [filename] if count == 1 else [numbered(filename, n) for n in range(1, count + 1)]


def output_name(payload: dict[str, Any], f: InputFile, fmt: str) -> str:
    """The task's ``filename``, else the input's stem with the output's extension."""
    return safe_filename(payload.get("filename") or f"{Path(f.filename).stem}.{fmt}")


def check_output(engine_id: str, fmt: str, path: Path) -> None:
    """An engine's output counts only if it is a non-empty file of the declared format."""
    if not path.is_file() or path.stat().st_size == 0:
        raise PermanentError(f"{engine_id} produced no {fmt} output", code="CONVERSION_FAILED")
    if mismatch(fmt, path) is not None:
        raise PermanentError(
            f"{engine_id} produced output that is not {fmt}", code="CONVERSION_FAILED"
        )


def run_hops(
    hops: list[Hop], src: Path, work: Path, options: Any, progress: Progress
) -> list[Path]:
    """Run the route; an engine that makes several files (pages) fans out: each of them goes
    through the rest of the route."""
    current = [src]
    for n, hop in enumerate(hops):
        if deadline.passed():  # the task's own timeout, between its engine runs
            raise PermanentError("The task's timeout passed", code="TIMEOUT")
        last = n == len(hops) - 1
        hop_options = options if last else hop.engine.descriptor.options()

        def step(fraction: float, n: int = n) -> None:
            progress((n + fraction) / len(hops))

        produced: list[Path] = []
        for k, path in enumerate(current):
            dst = work / f"hop{n}-{k}.{hop.dst}"
            made = timed_convert(hop, path, dst, hop_options, step)
            produced += made if made else [dst]
        for out in produced:
            check_output(hop.engine.descriptor.id, hop.dst, out)
        current = produced
    return current


def timed_convert(
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


def keep(
    rt: Runtime, task: Task, path: Path, filename: str, hashed: tuple[str, int] | None = None
) -> OutFile:
    """Store a file the run of ``task`` made, as its user's, and name it ``filename``;
    ``hashed``: its (sha256, size) when already known."""
    content, size = hashed or sha256_of(path)
    sha = owned_digest(content, owner(rt.settings, task.user_id))
    store_file(rt, path, sha, size, key_owner(rt.settings, task.user_id))
    return OutFile(sha, size, filename)


def keep_spool(rt: Runtime, task: Task, spool: Spool, plain_sha: str, filename: str) -> OutFile:
    """Store an import's finished spool (sealed as it was written, or plain; ``plain_sha``
    is what ``Spool.finish`` returned), as the task's user's, named ``filename``."""
    sha = owned_digest(plain_sha, owner(rt.settings, task.user_id))
    file_rows.reserve(rt.pool, sha, spool.size)
    owned_by = key_owner(rt.settings, task.user_id)
    store(rt.storage, spool.path, sha, owner=owned_by, consume=True, sealed=spool.sealed)
    return OutFile(sha, spool.size, filename)


def store_file(rt: Runtime, path: Path, sha: str, size: int, owned_by: uuid.UUID | None) -> None:
    """Store ``path`` under the address ``sha``, reserving it first (so the cleaner leaves it
    alone until a task refers to it); the file is consumed."""
    file_rows.reserve(rt.pool, sha, size)
    store(rt.storage, path, sha, owner=owned_by, consume=True)


def each_input(
    inputs: list[InputFile], progress: Progress
) -> list[tuple[int, InputFile, Progress]]:
    """Each input with its index and its share of the task's progress."""

    def share(i: int) -> Progress:
        return lambda fraction: progress((i + fraction) / len(inputs))

    return [(i, f, share(i)) for i, f in enumerate(inputs)]


# -- the conversion cache ------------------------------------------------------------------
def options_hash(options: Any, src_format: str) -> str:
    """The digest of what determines an output besides the input's bytes (whose owned
    digest is a key column of its own, so the cache is one user's unless shared), the output
    format and the engines: the options, and the format the input is read as (the same bytes
    read as rst or as md are two documents)."""
    fields = {"input_format": src_format, "options": msgspec.to_builtins(options)}
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


CacheKey = tuple[str, str, str, str]  # in the order of CACHE_KEY


def cache_key(
    f: InputFile, src_format: str, out_fmt: str, hops: list[Hop], options: Any
) -> CacheKey:
    versions = "+".join(f"{h.engine.descriptor.id}:{h.engine.descriptor.version()}" for h in hops)
    return (f.sha256, out_fmt, options_hash(options, src_format), versions)


def cached(rt: Runtime, key: CacheKey, filename: str) -> OutFile | None:
    """The cached output for ``key`` if it is still stored (counted as a hit or a miss)."""
    hit = file_rows.cache_hit(rt.pool, key)
    if hit is not None and rt.storage.exists(object_key(hit[0])):
        CACHE_LOOKUPS.labels("hit").inc()
        return OutFile(hit[0], hit[1], filename)
    CACHE_LOOKUPS.labels("miss").inc()
    return None


def cache_entry(key: CacheKey, out: OutFile) -> dict[str, Any]:
    """The conversion_cache row recorded with the task's end."""
    entry: dict[str, Any] = dict(zip(CACHE_KEY, key, strict=True))
    return entry | {"output_sha256": out.sha256, "size": out.size}
