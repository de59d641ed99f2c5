"""Office documents with LibreOffice, kept warm (queue `office`).

Inside each sandboxed engine helper, one soffice listener runs for as long as the helper
lives, with its own profile under the sandbox's /tmp, driven over UNO by ``office_bridge.py``
(under the system Python, which has python3-uno). It is restarted after
``APPLIANCE_OFFICE_RESTART_AFTER`` conversions (LibreOffice grows with use), when it has died,
and (with the whole helper) after a hang. Never one cold soffice per file.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import msgspec

from appliance.engines import Descriptor, Progress
from appliance.engines.tools import JsonLines, tool_version
from appliance.errors import PermanentError, RetryableError

WRITER_IN = ("doc", "docx", "odt", "rtf", "txt", "html")
CALC_IN = ("xls", "xlsx", "ods", "csv")
IMPRESS_IN = ("ppt", "pptx", "odp")
# target -> export filter, per document family
WRITER_OUT = {
    "pdf": "writer_pdf_Export",
    "docx": "MS Word 2007 XML",
    "odt": "writer8",
    "rtf": "Rich Text Format",
    "doc": "MS Word 97",
    "txt": "Text (encoded)",
    "html": "HTML (StarWriter)",
}
CALC_OUT = {
    "pdf": "calc_pdf_Export",
    "xlsx": "Calc MS Excel 2007 XML",
    "ods": "calc8",
    "xls": "MS Excel 97",
    "csv": "Text - txt - csv (StarCalc)",
}
IMPRESS_OUT = {
    "pdf": "impress_pdf_Export",
    "pptx": "Impress MS PowerPoint 2007 XML",
    "odp": "impress8",
    "ppt": "MS PowerPoint 97",
}
CSV_OPTIONS = "44,34,76,1"  # comma, double quote, UTF-8, start at line 1
START_TIMEOUT = 60.0  # seconds for a fresh listener to accept connections (~11 s measured)
BRIDGE = Path(__file__).with_name("office_bridge.py")


def _item(path: str, **props: str) -> str:
    return (
        f'<item oor:path="{path}">'
        + "".join(
            f'<prop oor:name="{k}" oor:op="fuse"><value>{v}</value></prop>'
            for k, v in props.items()
        )
        + "</item>"
    )


# The listener's profile, written before it starts. The bridge already loads every document
# with macros never executed and links never updated; this makes the same the profile's own
# defaults: macros disabled outright (security level "very high"), links in Writer and Calc
# never updated, links from untrusted documents blocked. (The sandbox has no network anyway.)
PROFILE_SETTINGS = (
    '<?xml version="1.0" encoding="UTF-8"?><oor:items'
    ' xmlns:oor="http://openoffice.org/2001/registry" xmlns:xs="http://www.w3.org/2001/XMLSchema"'
    ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
    + _item(
        "/org.openoffice.Office.Common/Security/Scripting",
        MacroSecurityLevel="3",
        DisableMacrosExecution="true",
        BlockUntrustedRefererLinks="true",
    )
    + _item("/org.openoffice.Office.Writer/Content/Update", Link="0")  # 0: never
    + _item("/org.openoffice.Office.Calc/Content/Update", Link="1")  # 1: never
    + "</oor:items>"
)


def _families() -> list[tuple[tuple[str, ...], dict[str, str]]]:
    return [(WRITER_IN, WRITER_OUT), (CALC_IN, CALC_OUT), (IMPRESS_IN, IMPRESS_OUT)]


class OfficeOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pages: Annotated[str, msgspec.Meta(pattern=r"^\d+(-\d+)?(,\d+(-\d+)?)*$")] | None = None
    pdf_a: bool = False  # PDF/A-2b instead of plain PDF


class _Listener:
    """soffice + its UNO bridge, in the helper process; restarted as described above."""

    def __init__(self, restart_after: int) -> None:
        self.restart_after = restart_after
        self.soffice: subprocess.Popen[bytes] | None = None
        self.bridge: subprocess.Popen[bytes] | None = None
        self.lines: JsonLines | None = None
        self.served = 0

    def _alive(self) -> bool:
        return all(p is not None and p.poll() is None for p in (self.soffice, self.bridge))

    def stop(self) -> None:
        if self.bridge is not None and self.bridge.poll() is None:
            self.bridge.kill()
            self.bridge.wait()
        if self.soffice is not None:
            # soffice is a launcher: soffice.bin runs below it, in the same process group.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.soffice.pid, signal.SIGKILL)
            self.soffice.wait()
        self.soffice = self.bridge = self.lines = None

    def start(self) -> None:
        self.stop()
        pipe = f"appliance_lo_{os.getpid()}"
        profile = Path("/tmp") / f"lo-profile-{os.getpid()}"  # noqa: S108  (sandbox tmpfs)
        (profile / "user").mkdir(parents=True, exist_ok=True)
        (profile / "user" / "registrymodifications.xcu").write_text(PROFILE_SETTINGS)
        self.soffice = subprocess.Popen(
            [
                "soffice",
                "--headless",
                "--invisible",
                "--nologo",
                "--norestore",
                "--nodefault",
                "--nolockcheck",
                "--nofirststartwizard",
                f"-env:UserInstallation={profile.as_uri()}",
                f"--accept=pipe,name={pipe};urp;StarOffice.ComponentContext",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            process_group=0,
        )
        self.bridge = subprocess.Popen(
            [
                "/usr/bin/python3",
                "-I",
                str(BRIDGE),
                f"uno:pipe,name={pipe};urp;StarOffice.ComponentContext",
                str(START_TIMEOUT),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert self.bridge.stdout is not None
        self.lines = JsonLines(self.bridge.stdout)
        ready = self._read(time.monotonic() + START_TIMEOUT + 5)
        if not ready or not ready.get("ready"):
            self.stop()
            raise PermanentError("LibreOffice did not start", code="ENGINE_UNAVAILABLE")
        self.served = 0

    def _read(self, deadline: float) -> dict[str, Any] | None:
        assert self.lines is not None
        try:
            return self.lines.read(deadline)
        except TimeoutError:
            return None

    def convert(self, request: dict[str, Any]) -> None:
        if not self._alive() or self.served >= self.restart_after:
            self.start()
        assert self.bridge is not None and self.bridge.stdin is not None
        self.served += 1
        try:
            self.bridge.stdin.write(msgspec.json.encode(request) + b"\n")
            self.bridge.stdin.flush()
        except BrokenPipeError:
            self.stop()
            raise PermanentError("LibreOffice stopped", code="ENGINE_CRASHED") from None
        # The helper's own wall-clock timeout bounds this wait (it kills the whole helper).
        reply = self._read(time.monotonic() + 24 * 3600)
        if reply is None:
            self.stop()  # soffice died on this document; the next one gets a fresh listener
            raise PermanentError("LibreOffice crashed on this document", code="ENGINE_CRASHED")
        if not reply.get("ok"):
            if not self._alive():  # LibreOffice died under us: not the document's fault alone
                self.stop()
                raise RetryableError(
                    "LibreOffice stopped during the conversion", code="ENGINE_CRASHED"
                )
            raise PermanentError(
                f"LibreOffice could not convert the document: "
                f"{reply.get('error', 'unknown error')}",
                code="INVALID_INPUT_FILE",
            )


class OfficeEngine:
    descriptor = Descriptor(
        id="libreoffice",
        conversions=frozenset(
            (src, dst)
            for sources, targets in _families()
            for src in sources
            for dst in targets
            if src != dst
        ),
        options=OfficeOptions,
        queue="office",
        version=lambda: tool_version("soffice"),
        cost=2.0,  # heavier than pandoc where both can do a pair
        requires=("soffice",),
    )

    def __init__(self) -> None:
        self._listener: _Listener | None = None
        # One conversion at a time per listener. In a sandboxed helper there is one thread
        # anyway; with APPLIANCE_SANDBOX=off worker threads share this engine.
        self._lock = threading.Lock()

    def _warm(self) -> _Listener:
        if self._listener is None:
            restart_after = int(os.environ.get("APPLIANCE_OFFICE_RESTART_AFTER", "200"))
            self._listener = _Listener(restart_after)
        return self._listener

    def convert(
        self,
        src: Path,
        dst: Path,
        src_format: str,
        dst_format: str,
        options: OfficeOptions,
        progress: Progress,
    ) -> None:
        targets = next(t for sources, t in _families() if src_format in sources)
        request: dict[str, Any] = {"src": str(src), "dst": str(dst), "filter": targets[dst_format]}
        if src_format == "csv":
            request |= {"import_filter": CALC_OUT["csv"], "import_options": CSV_OPTIONS}
        if src_format == "txt":
            request |= {"import_filter": "Text (encoded)", "import_options": "UTF8"}
        if dst_format == "csv":
            request["filter_options"] = CSV_OPTIONS
        if dst_format == "txt":
            request["filter_options"] = "UTF8"
        if dst_format == "pdf":
            data: dict[str, Any] = {}
            if options.pages:
                data["PageRange"] = options.pages
            if options.pdf_a:
                data["SelectPdfVersion"] = 2
            if data:
                request["filter_data"] = data
        progress(0.1)
        with self._lock:
            self._warm().convert(request)
        progress(1.0)
