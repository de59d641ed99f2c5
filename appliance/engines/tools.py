"""Running command-line engines (pandoc, ffmpeg, rsvg-convert) inside the engine helper.

They run as children of the sandboxed helper, so they inherit its sandbox and limits; the
worker's wall-clock timeout kills the whole helper process group if one hangs.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import select
import shutil
import signal
import subprocess
import time
from typing import IO, Any

from appliance.errors import PermanentError

log = logging.getLogger(__name__)
# An absolute path of two or more components (not part of a URL): the sandbox's
# ``/job/<id>/input.svg``, a worker's work directory. Clients see the last component only.
_PATH = re.compile(r"(?<![\w.:/])/(?:[^\s/'\"]+/)+([^\s/'\",;:)]+)")


def scrub_paths(message: str) -> str:
    """``message`` with each absolute path cut to its file name: where an engine keeps its
    files is the appliance's business, not the client's."""
    return _PATH.sub(lambda m: m.group(1), message)


def run_tool(
    argv: list[str], *, what: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run ``argv`` (with ``env`` added to the environment); a failure is the input's fault
    (``INVALID_INPUT_FILE``). The tool's own last words go to the log (in a helper: its log
    file), never to the client: they may name paths and versions."""
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            check=False,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **env} if env else None,
        )
    except FileNotFoundError as exc:
        raise PermanentError(f"{argv[0]} is not installed", code="ENGINE_UNAVAILABLE") from exc
    if done.returncode != 0:
        stderr = done.stderr.decode("utf-8", "replace")
        tail = stderr.strip().splitlines()[-3:]
        log.warning("%s exited %d: %s", argv[0], done.returncode, " | ".join(tail))
        if out_of_resources(done.returncode, stderr):
            raise PermanentError(
                f"{what} needs more memory, time or output space than the engine may use",
                code="ENGINE_LIMIT",
            )
        raise PermanentError(f"{what} could not convert the input", code="INVALID_INPUT_FILE")
    return done


def out_of_resources(returncode: int, stderr: str) -> bool:
    """Whether a tool that failed ran into one of the helper's limits rather than into a
    fault of the input: its data (memory) or CPU time limit, the output size limit, or a full
    private tmpfs. Tools say so in their own words (or die of SIGXCPU / SIGXFSZ)."""
    if returncode in (-signal.SIGXCPU, -signal.SIGXFSZ, -signal.SIGKILL):
        return True
    text = stderr.lower()
    return any(marker in text for marker in RESOURCE_MARKERS)


# How tools report a limit reached: GHC's runtime (pandoc), librsvg, glib, C++'s bad_alloc,
# Python, ffmpeg and any writer that meets a full tmpfs or RLIMIT_FSIZE.
RESOURCE_MARKERS = (
    "out of memory",
    "unable to commit",  # GHC: "Unable to commit 1048576 bytes of memory"
    "heap exhausted",
    "no memory",  # rsvg-convert
    "cannot allocate memory",
    "failed to allocate",
    "bad_alloc",
    "memoryerror",
    "no space left on device",
    "file too large",
)


@functools.cache
def tool_version(program: str, flag: str = "--version") -> str:
    """First line of ``program --version`` (cached), or 'missing'."""
    if shutil.which(program) is None:
        return "missing"
    out = subprocess.run([program, flag], capture_output=True, check=False, text=True)
    lines = (out.stdout or out.stderr).strip().splitlines()
    return lines[0].strip() if lines else "unknown"


class JsonLines:
    """Reads one JSON object per line from a child's pipe, with a deadline."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.fd = stream.fileno()
        self.buffer = b""

    def read(self, deadline: float) -> dict[str, Any] | None:
        """The next object; None when the child closed the pipe; TimeoutError at the deadline."""
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            ready, _, _ = select.select([self.fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(self.fd, 65536)
            if not chunk:
                return None
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return json.loads(line)  # type: ignore[no-any-return]
