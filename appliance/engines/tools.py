"""Running command-line engines (pandoc, ffmpeg, rsvg-convert) inside the engine helper.

They run as children of the sandboxed helper, so they inherit its sandbox and limits; the
worker's wall-clock timeout kills the whole helper process group if one hangs.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import select
import shutil
import subprocess
import time
from typing import IO, Any

from appliance.errors import PermanentError

log = logging.getLogger(__name__)


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
        tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        log.warning("%s exited %d: %s", argv[0], done.returncode, " | ".join(tail))
        raise PermanentError(f"{what} could not convert the input", code="INVALID_INPUT_FILE")
    return done


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
