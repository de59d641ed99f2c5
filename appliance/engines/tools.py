"""Running command-line engines (pandoc, ffmpeg, rsvg-convert) inside the engine helper.

They run as children of the sandboxed helper, so they inherit its sandbox and limits; the
worker's wall-clock timeout kills the whole helper process group if one hangs.
"""

from __future__ import annotations

import functools
import shutil
import subprocess

from appliance.errors import PermanentError


def run_tool(argv: list[str], *, what: str) -> subprocess.CompletedProcess[bytes]:
    """Run ``argv``; a failure is the input's fault (``INVALID_INPUT``), with the tool's own
    last words as the message."""
    try:
        done = subprocess.run(argv, capture_output=True, check=False, stdin=subprocess.DEVNULL)
    except FileNotFoundError as exc:
        raise PermanentError(f"{argv[0]} is not installed", code="ENGINE_UNAVAILABLE") from exc
    if done.returncode != 0:
        tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        raise PermanentError(
            f"{what} failed: {' '.join(tail) or f'exit {done.returncode}'}",
            code="INVALID_INPUT_FILE",
        )
    return done


@functools.cache
def tool_version(program: str, flag: str = "--version") -> str:
    """First line of ``program --version`` (cached), or 'missing'."""
    if shutil.which(program) is None:
        return "missing"
    out = subprocess.run([program, flag], capture_output=True, check=False, text=True)
    lines = (out.stdout or out.stderr).strip().splitlines()
    return lines[0].strip() if lines else "unknown"
