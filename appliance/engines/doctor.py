"""`appliance doctor`: which engines can run here, and whether the sandbox works."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from appliance.engines import Engine
from appliance.engines.sandbox import NOBODY, sandbox_argv
from appliance.settings import Settings


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def check_engine(engine: Engine) -> Check:
    d = engine.descriptor
    missing = [p for p in d.requires if shutil.which(p) is None]
    if missing:
        return Check(
            d.id,
            False,
            f"missing program(s): {', '.join(missing)} (scripts/install.sh installs them)",
        )
    try:
        version = d.version()
    except Exception as exc:  # a library that fails to load, e.g. libvips
        return Check(d.id, False, f"cannot load: {type(exc).__name__}: {exc}")
    serves = f"{len(d.conversions)} conversions" if d.conversions else "task operations"
    return Check(d.id, True, f"{version}; {serves}; queue {d.queue}")


# Run inside the sandbox: must not reach any address, must be able to write /job.
PROBE = """
import os, socket
try:
    socket.create_connection(("192.0.2.1", 80), timeout=1)
    net = "reachable"
except OSError:
    net = "none"
open("/job/ok", "w").write(f"{os.getuid()} {net}")
"""


def check_sandbox(settings: Settings) -> Check:
    if settings.sandbox == "off":
        return Check("sandbox", False, "APPLIANCE_SANDBOX=off: engines run inside the worker")
    if shutil.which("bwrap") is None:
        return Check("sandbox", False, "bubblewrap (bwrap) is not installed")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        work.chmod(0o755)
        if os.geteuid() == 0:
            os.chown(work, NOBODY, NOBODY)
        done = subprocess.run(
            sandbox_argv(work, [sys.executable, "-I", "-c", PROBE]),
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        if done.returncode != 0 or not (work / "ok").exists():
            return Check("sandbox", False, f"bubblewrap failed: {done.stderr.strip()[-300:]}")
        uid, net = (work / "ok").read_text().split()
    if net != "none":
        return Check("sandbox", False, "the sandbox can reach the network")
    return Check("sandbox", True, f"bubblewrap works; engines run as uid {uid}, no network")


def diagnose(settings: Settings, engines: list[Engine]) -> list[Check]:
    return [check_sandbox(settings), *(check_engine(e) for e in engines)]
