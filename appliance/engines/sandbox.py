"""Engines run in warm, sandboxed helper processes, never in the worker that holds database and
storage credentials (DESIGN.md, Engines).

A helper is ``python -m appliance.engines.helper`` inside bubblewrap (bwrap.py: no network, a
read-only view of ``/usr``, the Python installation and the application, size-bounded private
tmpfs ``/tmp``, ``/dev/shm`` and ``/job``), as a uid of its own with no capabilities and
no_new_privs, under a seccomp filter (seccomp.py). Resource limits (data memory, file size,
CPU time, processes) apply to the whole helper; each conversion also has a wall-clock timeout
after which the helper's process group is killed.

The worker talks to a helper over its stdin/stdout, one JSON object per line:
request ``{"engine", "src", "dst", "src_format", "dst_format", "options"}`` (paths under /job;
``"srcs": [...]`` instead of ``src`` for an engine that combines several inputs, merge),
replies ``{"progress": f}`` ... then ``{"ok": true, "cpu_seconds": s}`` (the CPU time the
conversion used, for usage metering) or ``{"error": CODE, "message": ...}``.
A helper serves many conversions (it stays warm) and is replaced after ``restart_after`` of
them (but those of an engine that restarts its own process, LibreOffice), after a crash, or
after a timeout.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from appliance.engines import Descriptor, Engine, Progress, cputime, outside
from appliance.engines import deadline as task_deadline
from appliance.engines.bwrap import (
    JOB_DIR,
    Box,
    UidLease,
    close_quietly,
    open_job_root,
    package_root,
    sandbox_argv,
    seccomp_fd,
)
from appliance.engines.tools import JsonLines
from appliance.errors import PermanentError, RetryableError
from appliance.metrics import ENGINE_RESTARTS
from appliance.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    timeout_seconds: float = 120.0  # wall clock per conversion
    memory_bytes: int = 2 << 30  # data (heap + private mappings) of each helper process
    output_bytes: int = 1 << 30  # largest file a helper may write
    # CPU time of each helper process over its whole life, a backstop. A helper that serves
    # only LibreOffice is no longer recycled by count: at ~2 ms of its own CPU a conversion it
    # reaches the worker's limit (24,000 s by default) after about ten million conversions;
    # the conversion running then fails as ENGINE_CRASHED and the helper is replaced.
    cpu_seconds: int = 3600
    restart_after: int = 200  # conversions before a helper is replaced
    office_restart_after: int = 1000  # conversions before a helper's LibreOffice is replaced
    chromium_restart_after: int = 500  # pages before a helper's Chromium is replaced
    inflated_bytes: int = 1 << 30  # most a zip container (docx, xlsx, odt...) may inflate to
    # Processes and threads of one helper at once (RLIMIT_NPROC of its own uid, or of its own
    # user namespace when the worker is not root: bwrap.py).
    processes: int = 256
    tmp_bytes: int = 512 << 20  # its /tmp (HOME, the engines' scratch)
    job_bytes: int = 1536 << 20  # its /job: one conversion's input and outputs
    seccomp: bool = True  # the seccomp filter (seccomp.py; x86_64 only)
    # First of the host's helper uids (bwrap.UID_SLOTS of them): systemd's documented
    # allocation leaves 0x70000000-0x7FFDFFFF unused (container ranges end below it).
    uid_base: int = 0x70000000


def limits_for(settings: Settings) -> Limits:
    """The helpers' limits as the settings give them."""
    return Limits(
        timeout_seconds=settings.engine_timeout_seconds,
        memory_bytes=settings.engine_memory_mb << 20,
        restart_after=settings.engine_restart_after,
        office_restart_after=settings.office_restart_after,
        chromium_restart_after=settings.chromium_restart_after,
        # A backstop over the helper's life: each run is bounded by its wall-clock timeout.
        cpu_seconds=max(3600, int(settings.engine_timeout_seconds * settings.engine_restart_after)),
        processes=settings.engine_max_processes,
        tmp_bytes=settings.engine_tmp_mb << 20,
        job_bytes=settings.engine_job_mb << 20,
        seccomp=settings.sandbox_seccomp,
    )


class EngineTimeout(PermanentError):
    code = "ENGINE_TIMEOUT"


class EngineCrashed(PermanentError):
    code = "ENGINE_CRASHED"


def helper_argv() -> list[str]:
    """The helper runs the same ``appliance`` code as this process. ``-I`` keeps the
    environment and working directory out of its import path, and an editable install's path
    file may name another checkout, so the package root goes first explicitly."""
    start = (
        f"import runpy, sys; sys.path.insert(0, {str(package_root())!r}); "
        "runpy.run_module('appliance.engines.helper', run_name='__main__', alter_sys=True)"
    )
    return [sys.executable, "-I", "-c", start]


_SPAWNER = ThreadPoolExecutor(1, thread_name_prefix="helper-spawner")


class Helper:
    """One warm sandboxed helper process and its /job, seen from the worker at ``workdir``.

    ``home`` names it on the host: its log is ``<home>.log``."""

    def __init__(self, home: Path, limits: Limits, argv: list[str] | None = None) -> None:
        self.home = home
        self.limits = limits
        self.argv = argv or helper_argv()
        self.proc: subprocess.Popen[bytes] | None = None
        self.served = 0
        self.uid = UidLease(limits.uid_base)
        self._job_root: int | None = None  # descriptor of the sandbox's /job
        self._lines: JsonLines | None = None
        self._ended = "start"  # why the next start happens (metric label)

    @property
    def workdir(self) -> Path:
        """The running (or last) helper's /job, as the worker reaches it."""
        if self._job_root is None:
            raise RuntimeError("the helper has not started")
        return Path(f"/proc/self/fd/{self._job_root}")

    def _start(self) -> subprocess.Popen[bytes]:
        close_quietly(self._job_root)
        self._job_root = None
        self.home.parent.mkdir(parents=True, exist_ok=True)
        uid = self.uid.take()
        info_read, info_write = os.pipe()
        program = seccomp_fd() if self.limits.seccomp else None
        box = Box(
            uid=uid,
            processes=self.limits.processes,
            tmp_bytes=self.limits.tmp_bytes,
            job_bytes=self.limits.job_bytes,
            env={
                "APPLIANCE_OFFICE_RESTART_AFTER": str(self.limits.office_restart_after),
                "APPLIANCE_CHROMIUM_RESTART_AFTER": str(self.limits.chromium_restart_after),
                "APPLIANCE_MAX_INFLATED_BYTES": str(self.limits.inflated_bytes),
            },
            seccomp_fd=program,
            info_fd=info_write,
        )
        try:
            self.proc = self._spawn(sandbox_argv(self.argv, box), (info_write, program))
            os.close(info_write)
            info_write = -1
            self._job_root = open_job_root(info_read)
        except (OSError, TimeoutError) as exc:
            log.error("engine helper did not start: %s", exc)
            self.stop()
            raise EngineCrashed("The engine sandbox did not start") from exc
        finally:
            for fd in (info_read, info_write, program):
                if fd is not None and fd >= 0:
                    close_quietly(fd)
        self.served = 0
        assert self.proc.stdout is not None
        self._lines = JsonLines(self.proc.stdout)
        return self.proc

    def _spawn(self, argv: list[str], fds: tuple[int | None, ...]) -> subprocess.Popen[bytes]:
        limits = self.limits

        def apply_limits() -> None:  # runs in the child before exec; inherited by the helper
            # Data, not address space: RLIMIT_DATA counts the heap and private writable
            # mappings (what decoding a file allocates) but not reserved, untouched ranges.
            # Chromium (calibre's PDF output) reserves tens of GB and fails under RLIMIT_AS.
            resource.setrlimit(resource.RLIMIT_DATA, (limits.memory_bytes, limits.memory_bytes))
            resource.setrlimit(resource.RLIMIT_FSIZE, (limits.output_bytes, limits.output_bytes))
            resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds))
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

        log_file = open(f"{self.home}.log", "ab")  # noqa: SIM115

        def spawn() -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log_file,
                start_new_session=True,
                preexec_fn=apply_limits,
                pass_fds=tuple(fd for fd in fds if fd is not None),
            )

        # bwrap's --die-with-parent follows the thread that forked it, not the process: the
        # helper is forked by one thread that lives as long as the process, since the
        # conversion's thread (a pool lends helpers to any) may end before the helper.
        try:
            return _SPAWNER.submit(spawn).result()
        finally:
            log_file.close()

    def stop(self) -> None:
        """End the helper (its /job stays readable at ``workdir`` until the next start)."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None
        self.uid.release()

    def close(self) -> None:
        self.stop()
        close_quietly(self._job_root)
        self._job_root = None

    def job_dir(self) -> Path:
        """A fresh directory for one conversion, inside the helper's work directory. It is the
        worker's (root's, 0755) until ``hand_over``: a helper still running from an earlier
        request cannot plant a name in it that the worker would then write through."""
        reason = None
        if self.proc is None:
            reason = self._ended
        elif self.proc.poll() is not None:
            reason = "died"
        elif self.served >= self.limits.restart_after:
            reason = "recycled"
        if reason is not None:
            self.stop()
            self._start()
            ENGINE_RESTARTS.labels(reason).inc()
            self._ended = "start"
        path = self.workdir / uuid.uuid4().hex
        path.mkdir(mode=0o755)
        return path

    def hand_over(self, job: Path) -> None:
        """The helper may write in ``job`` now (its inputs are in; the worker writes there no
        more, and takes outputs back only through ``take_output``)."""
        if os.geteuid() == 0:
            os.chown(job, self.uid.uid, self.uid.uid)

    def call(self, request: dict[str, Any], progress: Progress, counts: bool = True) -> list[str]:
        """Send one request and wait for its end: the extra output files it names (relative to
        the job directory), or the engine's error, or
        ``EngineTimeout`` / ``EngineCrashed`` (the helper is then replaced). ``counts``: the
        request counts toward the helper's replacement (Descriptor.recycles_itself)."""
        assert self.proc is not None and self.proc.stdin is not None
        self.served += counts
        seconds = task_deadline.remaining(self.limits.timeout_seconds)
        deadline = time.monotonic() + seconds
        try:
            self.proc.stdin.write(json.dumps(request).encode() + b"\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            self.stop()
            self._ended = "crashed"
            raise EngineCrashed("The engine process ended unexpectedly") from None
        while True:
            reply = self._read_line(deadline, seconds)
            if "progress" in reply:
                progress(float(reply["progress"]))
                continue
            if "fetch" in reply:  # the engine asks for a page from outside (outside.py)
                self._send(outside.answer(reply["fetch"]))
                continue
            if reply.get("ok"):
                cputime.add(float(reply.get("cpu_seconds", 0)))
                return [str(name) for name in reply.get("files") or []]
            if reply.get("retry"):
                raise RetryableError(
                    str(reply.get("message", "engine failure")),
                    code=str(reply.get("error", "ENGINE_CRASHED")),
                )
            raise PermanentError(
                str(reply.get("message", "conversion failed")),
                code=str(reply.get("error", "CONVERSION_FAILED")),
            )

    def _send(self, message: dict[str, Any]) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):  # a dead helper is noticed on the next read
            self.proc.stdin.write(json.dumps(message).encode() + b"\n")
            self.proc.stdin.flush()

    def _read_line(self, deadline: float, seconds: float) -> dict[str, Any]:
        assert self.proc is not None and self._lines is not None
        try:
            reply = self._lines.read(deadline)
        except TimeoutError:
            self.stop()
            self._ended = "timeout"
            raise EngineTimeout(f"The conversion took longer than {seconds:.0f} s") from None
        if reply is None:
            code = self.proc.wait()
            self.stop()
            self._ended = "crashed"
            reason = f"signal {-code}" if code < 0 else f"exit status {code}"
            raise EngineCrashed(
                f"The engine process ended unexpectedly ({reason}); the "
                "input may be malformed or exceed the engine's limits"
            )
        return reply


class HelperPool:
    """The worker process's helpers, lent to one conversion at a time.

    ``size`` bounds how many exist, i.e. how many engine runs go on at once (each office
    helper holds a warm LibreOffice); a conversion waits for a free one. None: one more is
    made whenever all are busy, so there are as many as threads convert at once. With more
    worker threads than helpers, a helper goes straight to the next conversion while the
    thread that used it records its result, and never waits on Postgres or storage. The
    most recently used free helper goes first, so the warm ones stay in use."""

    def __init__(
        self, root: Path, limits: Limits, argv: list[str] | None = None, size: int | None = None
    ) -> None:
        self.root = root
        self.limits = limits
        self.argv = argv
        self.size = size
        self._all: list[Helper] = []
        self._free: list[Helper] = []
        self._cond = threading.Condition()

    @contextlib.contextmanager
    def lease(self) -> Iterator[Helper]:
        """A helper for one conversion, back in the pool afterwards."""
        with self._cond:
            while not self._free and self.size is not None and len(self._all) >= self.size:
                self._cond.wait()
            helper = self._free.pop() if self._free else self._new()
        try:
            yield helper
        finally:
            with self._cond:
                self._free.append(helper)
                self._cond.notify()

    def helper(self) -> Helper:
        """The helper the next conversion gets when the pool is idle (tests look into it)."""
        with self._cond:
            if not self._free:
                self._free.append(self._new())
            return self._free[-1]

    def _new(self) -> Helper:
        helper = Helper(self.root / f"{os.getpid()}-{len(self._all)}", self.limits, self.argv)
        self._all.append(helper)
        return helper

    def close(self) -> None:
        with self._cond:
            for helper in self._all:
                helper.close()


class SandboxedEngine:
    """Presents an in-process engine's descriptor; runs its conversions in a helper."""

    def __init__(self, engine: Engine, pool: HelperPool) -> None:
        self.descriptor: Descriptor = engine.descriptor
        self.pool = pool

    def convert(
        self,
        src: Path,
        dst: Path,
        src_format: str,
        dst_format: str,
        options: Any,
        progress: Progress,
    ) -> list[Path] | None:
        def inputs(helper: Helper, job: Path) -> dict[str, Any]:
            inside = job / f"input.{src_format}"
            _link_or_copy(src, inside)
            return {"src": _in_sandbox(helper, inside), "src_format": src_format}

        return self._run(inputs, dst, dst_format, options, progress)

    def combine(
        self, srcs: list[Path], dst: Path, dst_format: str, options: Any, progress: Progress
    ) -> list[Path] | None:
        """Several inputs into one output (merge), in a helper like ``convert``."""

        def inputs(helper: Helper, job: Path) -> dict[str, Any]:
            inside = []
            for n, src in enumerate(srcs):
                path = job / f"input-{n}{src.suffix}"
                _link_or_copy(src, path)
                inside.append(_in_sandbox(helper, path))
            return {"srcs": inside}

        return self._run(inputs, dst, dst_format, options, progress)

    def _run(
        self,
        inputs: Callable[[Helper, Path], dict[str, Any]],
        dst: Path,
        dst_format: str,
        options: Any,
        progress: Progress,
    ) -> list[Path] | None:
        """One request in a leased helper's fresh job directory; ``inputs`` puts the input
        files there and names them in the request."""
        with self.pool.lease() as helper:
            job = helper.job_dir()
            try:
                request = {
                    "engine": self.descriptor.id,
                    **inputs(helper, job),
                    "dst": _in_sandbox(helper, job / f"output.{dst_format}"),
                    "dst_format": dst_format,
                    "options": msgspec.to_builtins(options),
                }
                helper.hand_over(job)
                names = helper.call(request, progress, not self.descriptor.recycles_itself)
                return self._collect(job, names, dst, dst_format)
            finally:
                shutil.rmtree(job, ignore_errors=True)

    def _collect(
        self, job: Path, names: list[str], dst: Path, dst_format: str
    ) -> list[Path] | None:
        """Take the helper's output(s) back from its job directory to ``dst`` (numbered if
        several), as the worker's own files (``take_output``)."""
        if names:  # several outputs: bring each back next to dst, in order
            moved: list[Path] = []
            for name in names:
                target = dst.with_name(f"{dst.stem}-{len(moved) + 1}{dst.suffix}")
                take_output(job, name, target)
                moved.append(target)
            return moved
        take_output(job, f"output.{dst_format}", dst)
        return None


def take_output(job: Path, name: str, dst: Path) -> None:
    """Copy the file the helper left at ``name`` (relative to ``job``) to ``dst``, a new file of
    the worker's own. Everything under ``job`` is the helper's to shape, so the name is walked
    one component at a time from a descriptor of ``job`` without following any link, and only
    a regular file with no other link is taken; anything else (a link, a FIFO, a device, a
    directory, a name that leaves ``job``) fails the conversion. Copying, not moving, leaves the
    helper no handle on a file the worker goes on to hash and store."""
    parts = name.split("/")
    if not name or name.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise _refused(name)
    fd = os.open(job, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        for part in parts[:-1]:
            inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = inner
        if not stat.S_ISREG(os.stat(parts[-1], dir_fd=fd, follow_symlinks=False).st_mode):
            raise _refused(name)  # looked at without opening: a FIFO or device never is
        src = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
    except OSError:
        raise _refused(name) from None
    finally:
        os.close(fd)
    try:
        info = os.fstat(src)  # the file opened, whatever the name points to by now
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            raise _refused(name)
        # dst is the worker's own path (a caller may reuse it); never through a link there
        out = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        try:
            _copy(src, out)
        finally:
            os.close(out)
    finally:
        os.close(src)


def _copy(src: int, dst: int) -> None:
    """All of ``src`` into ``dst``, in the kernel where it can."""
    try:
        while os.copy_file_range(src, dst, 1 << 30):
            pass
    except OSError:  # another filesystem type: copy through user space
        os.lseek(src, 0, os.SEEK_SET)
        os.lseek(dst, 0, os.SEEK_SET)
        os.ftruncate(dst, 0)
        while chunk := os.read(src, 1 << 20):
            os.write(dst, chunk)


def _refused(name: str) -> PermanentError:
    return PermanentError(
        f"the engine left no plain output file at {name!r}", code="CONVERSION_FAILED"
    )


def _in_sandbox(helper: Helper, path: Path) -> str:
    return f"{JOB_DIR}/{path.relative_to(helper.workdir)}"


def _link_or_copy(src: Path, dst: Path) -> None:
    """Put the input at ``dst`` in a job directory not yet handed over: a hard link (the same
    filesystem, no copy; the helper only reads it), else a copy. Never through an existing
    name: one there fails the conversion."""
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise PermanentError(
                "the job directory was not empty", code="CONVERSION_FAILED"
            ) from exc
        out = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with open(src, "rb") as inp:
            try:
                _copy(inp.fileno(), out)
            except OSError as full:
                if full.errno not in (errno.ENOSPC, errno.EFBIG):
                    raise
                # the helper's /job (a tmpfs of engine_job_mb), not the host's disk: the same
                # on every worker, so no retry
                raise PermanentError(
                    "The inputs are larger than an engine's work area (APPLIANCE_ENGINE_JOB_MB)",
                    code="ENGINE_LIMIT",
                ) from None
            finally:
                os.close(out)
    fd = os.open(dst, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        os.fchmod(fd, 0o644)
    finally:
        os.close(fd)


def sandboxed(engines: list[Engine], pool: HelperPool) -> list[Engine]:
    return [SandboxedEngine(e, pool) for e in engines]
