"""`appliance doctor`: which engines can run here, and whether the sandbox works."""

from __future__ import annotations

import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from appliance.engines import Engine
from appliance.engines.bwrap import JOB_DIR
from appliance.engines.sandbox import Helper, limits_for
from appliance.errors import PermanentError, RetryableError
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


# Run inside the sandbox as a helper: must not reach any address, must be able to write the
# job directory it is given.
PROBE = """
import json, os, socket, sys
request = json.loads(sys.stdin.readline())
try:
    socket.create_connection(("192.0.2.1", 80), timeout=1)
    net = "reachable"
except OSError:
    net = "none"
open(request["dir"] + "/ok", "w").write(f"{os.getuid()} {net}")
print(json.dumps({"ok": True}), flush=True)
"""


def check_sandbox(settings: Settings) -> Check:
    if settings.sandbox == "off":
        return Check("sandbox", False, "APPLIANCE_SANDBOX=off: engines run inside the worker")
    if shutil.which("bwrap") is None:
        return Check("sandbox", False, "bubblewrap (bwrap) is not installed")
    with tempfile.TemporaryDirectory() as tmp:
        helper = Helper(
            Path(tmp) / "doctor",
            limits_for(settings),
            argv=[sys.executable, "-I", "-c", PROBE],
        )
        try:
            job = helper.job_dir()
            helper.hand_over(job)
            helper.call({"dir": f"{JOB_DIR}/{job.name}"}, lambda f: None)
            uid, net = (job / "ok").read_text().split()
        except (PermanentError, RetryableError, OSError) as exc:
            log = (Path(tmp) / "doctor.log").read_text(errors="replace").strip()
            return Check("sandbox", False, f"bubblewrap failed: {exc} {log[-300:]}")
        finally:
            helper.close()
    if net != "none":
        return Check("sandbox", False, "the sandbox can reach the network")
    return Check("sandbox", True, f"bubblewrap works; engines run as uid {uid}, no network")


def diagnose(settings: Settings, engines: list[Engine]) -> list[Check]:
    return [check_sandbox(settings), *(check_engine(e) for e in engines)]
