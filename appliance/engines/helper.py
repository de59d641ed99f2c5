"""The process inside the sandbox: runs conversions for the worker, one JSON line each.

It holds no credentials and sees only its work directory (/job) writable; see sandbox.py.
Engines that load slowly (libvips) stay loaded between conversions. Their scratch does not:
after every conversion, /tmp and /dev/shm are emptied but for what an engine declares it
keeps (``Descriptor.keeps``), so nothing one conversion leaves there reaches the next, which
may be another user's.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import resource
import shutil
import sys
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import msgspec

from appliance.engines import Engine, outside
from appliance.engines.containers import check_container
from appliance.engines.enabled import enabled_engines
from appliance.engines.tools import scrub_paths
from appliance.errors import PermanentError, RetryableError

ROOT = Path("/job")
SCRATCH = (Path("/tmp"), Path("/dev/shm"))  # noqa: S108  (the sandbox's own tmpfs)
DEFAULT_MAX_INFLATED = 1 << 30
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")  # /proc's unit of CPU time, per second


def cpu_seconds() -> float:
    """CPU time (user + system) used so far by this helper, its waited-for children, and every
    other process of its session alive now (a warm LibreOffice) with theirs. Inside the
    sandbox's PID namespace /proc holds only the helper's own processes. The difference
    around a request is what its conversion used; the reply carries it (``cpu_seconds``)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    seconds = own.ru_utime + own.ru_stime + reaped.ru_utime + reaped.ru_stime
    me, session, ticks = os.getpid(), os.getsid(0), 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:  # it ended meanwhile
            continue
        if int(fields[3]) == session:  # after the name: state ppid pgrp session ...
            ticks += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return seconds + ticks / CLOCK_TICKS


def _reply(out: Any, message: dict[str, Any]) -> None:
    out.write(json.dumps(message) + "\n")
    out.flush()


def _inside(path: str) -> Path:
    resolved = Path(path).resolve()
    if resolved != ROOT and ROOT not in resolved.parents:
        raise PermanentError(
            f"path {path!r} is outside the work directory", code="INVALID_INPUT_FILE"
        )
    return resolved


def _options(engine: Engine, raw: Any) -> Any:
    """The request's options. The API validated them, but some checks need this host (an OCR
    language must be installed here): options refused now are still the client's error."""
    try:
        return msgspec.convert(raw, engine.descriptor.options)
    except msgspec.ValidationError as exc:
        raise PermanentError(f"Invalid option: {exc}", code="INVALID_OPTIONS") from exc


def _run(engine: Engine, req: dict[str, Any], options: Any, out: Any) -> list[Path] | None:
    def progress(fraction: float) -> None:
        _reply(out, {"progress": round(fraction, 3)})

    if "srcs" in req:  # several inputs into one output (merge)
        combine = engine.combine  # type: ignore[attr-defined]
        srcs = [_inside(src) for src in req["srcs"]]
        return combine(srcs, _inside(req["dst"]), req["dst_format"], options, progress)  # type: ignore[no-any-return]
    return engine.convert(
        _inside(req["src"]),
        _inside(req["dst"]),
        req["src_format"],
        req["dst_format"],
        options,
        progress,
    )


def scrub(keeps: Iterable[str], roots: Iterable[Path] = SCRATCH) -> None:
    """Remove everything in ``roots`` but the names matching a pattern of ``keeps`` and the
    mounts there (the code, when it lives below /tmp: read-only anyway)."""
    patterns = tuple(keeps)
    for root in roots:
        device = root.stat().st_dev
        for entry in os.scandir(root):
            if any(fnmatch.fnmatchcase(entry.name, p) for p in patterns):
                continue
            if entry.stat(follow_symlinks=False).st_dev != device:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


def serve(
    engines: dict[str, Engine],
    inp: Any,
    out: Any,
    max_inflated: int = DEFAULT_MAX_INFLATED,
    after: Callable[[], None] = lambda: None,
) -> None:
    """Answer each request line of ``inp`` on ``out``; ``after`` runs before each answer is
    sent, so the worker hears of the end of a conversion once ``after`` is done."""
    for line in inp:
        start = cpu_seconds()
        answer = _answer(engines, line, out, max_inflated)
        if answer.get("ok"):
            answer["cpu_seconds"] = cpu_seconds() - start
        after()
        _reply(out, answer)


def _answer(engines: dict[str, Engine], line: str, out: Any, max_inflated: int) -> dict[str, Any]:
    """The reply to one request (progress replies go to ``out`` meanwhile)."""
    try:
        req = json.loads(line)
        engine = engines[req["engine"]]
        options = _options(engine, req["options"])
        if "src" in req:  # zip bombs stop here, before any engine inflates them
            check_container(_inside(req["src"]), req["src_format"], max_inflated)
        files = _run(engine, req, options, out)
        dst_dir = _inside(req["dst"]).parent
        return {"ok": True, "files": [str(Path(f).relative_to(dst_dir)) for f in files or []]}
    except PermanentError as exc:
        return {"error": exc.code, "message": scrub_paths(exc.message)}
    except RetryableError as exc:
        return {"error": exc.code, "message": scrub_paths(exc.message), "retry": True}
    except MemoryError:
        return {
            "error": "ENGINE_LIMIT",
            "message": "The conversion needs more memory than the engine may use",
        }
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        return {"error": "CONVERSION_FAILED", "message": f"The engine failed: {type(exc).__name__}"}


def run(engines: list[Engine]) -> None:
    """Serve ``engines`` on stdin/stdout, emptying the scratch after every conversion."""
    by_id = {e.descriptor.id: e for e in engines}
    for engine in engines:
        engine.descriptor.version()  # load libraries now: the first conversion stays fast
    # stdout carries the protocol only: anything a library prints goes to stderr (the log).
    protocol = sys.stdout
    sys.stdout = sys.stderr
    outside.connect(sys.stdin, protocol)  # an engine's fetches go to the worker
    max_inflated = int(os.environ.get("APPLIANCE_MAX_INFLATED_BYTES", DEFAULT_MAX_INFLATED))
    keeps = {pattern for e in engines for pattern in e.descriptor.keeps}
    serve(by_id, sys.stdin, protocol, max_inflated, after=lambda: scrub(keeps))


def main() -> None:
    run(enabled_engines())


if __name__ == "__main__":
    main()
