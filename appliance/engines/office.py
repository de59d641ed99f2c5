"""Office documents with LibreOffice, kept warm (queue `office`).

Inside each sandboxed engine helper, one soffice listener runs for as long as the helper
lives, with its own profile under the sandbox's /tmp, driven over UNO by ``office_bridge.py``
(under the system Python, which has python3-uno). It is restarted after
``APPLIANCE_OFFICE_RESTART_AFTER`` conversions (LibreOffice grows with use), when it has died,
and (with the whole helper) after a hang. Never one cold soffice per file.
"""

from __future__ import annotations

import contextlib
import csv
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, Any

import msgspec

from appliance.engines import LAYOUT_FONTS, Descriptor, Progress
from appliance.engines.data import CSV_FIELD_LIMIT, SHEET_MAX_COLUMNS, SHEET_MAX_ROWS
from appliance.engines.formats import as_utf8
from appliance.engines.pdf import PagesSpec
from appliance.engines.tools import JsonLines, out_of_resources, tool_version
from appliance.errors import PermanentError, RetryableError

# Not html: LibreOffice 7.4 aborts opening some pages as a web document, and opened as a Writer
# document instead it fetches linked pictures. html reaches Writer's formats through pandoc's
# html reader (to docx, which Writer reads) and pdf and pictures through Chromium.
WRITER_IN = ("doc", "docx", "odt", "rtf", "txt")
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
PRESTART = 20  # conversions before a restart is due that the replacement starts
BRIDGE = Path(__file__).with_name("office_bridge.py")
LOG_TAIL_BYTES = 4096  # of soffice's stderr, read for why it died
# LibreOffice's I/O error classes for a lack of memory, space or file handles (ErrCodeClass
# Space), and a store that failed after the document loaded (Write: measured when its memory
# ran out during a PDF export; /job is always writable)
RESOURCE_ERROR = re.compile(r"Error Area:Io Class:(Space|Write)\b")


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


def check_sheet_size(src: Path) -> None:
    """ENGINE_LIMIT for a csv larger than a Calc sheet, whose import keeps the first 16384
    columns and 1048576 rows and drops the rest without a word. Read as CSV_OPTIONS tells
    LibreOffice to read it; a file the csv module cannot parse is left to LibreOffice."""
    csv.field_size_limit(CSV_FIELD_LIMIT)
    rows = columns = 0
    try:
        with open(src, encoding="utf-8-sig", errors="replace", newline="") as fh:
            for row in csv.reader(fh):
                rows, columns = rows + 1, max(columns, len(row))
                if columns > SHEET_MAX_COLUMNS or rows > SHEET_MAX_ROWS:
                    break
    except csv.Error:
        return
    if columns > SHEET_MAX_COLUMNS:
        has, most = f"{columns} columns (or more)", f"{SHEET_MAX_COLUMNS} columns"
    elif rows > SHEET_MAX_ROWS:
        has, most = f"more than {SHEET_MAX_ROWS} rows", f"{SHEET_MAX_ROWS} rows"
    else:
        return
    raise PermanentError(
        f"The table has {has}; a LibreOffice Calc sheet holds at most {most} "
        "(to txt, json, jsonl, yaml, xml or parquet it converts whole)",
        code="ENGINE_LIMIT",
    )


class OfficeOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pages: PagesSpec | None = None
    pdf_a: bool = False  # PDF/A-2b instead of plain PDF


class _Instance:
    """One soffice and its UNO bridge, with profile ``slot`` (0 or 1: a replacement starts
    next to the running instance, never in its profile)."""

    def __init__(self, slot: int) -> None:
        self.slot = slot
        self.soffice: subprocess.Popen[bytes] | None = None
        self.bridge: subprocess.Popen[bytes] | None = None
        self.lines: JsonLines | None = None
        self.log: Path | None = None  # soffice's stderr, read after it died

    def out_of_memory(self) -> bool:
        """Whether soffice's last words name a limit (std::bad_alloc past RLIMIT_DATA)."""
        if self.log is None:
            return False
        try:
            with open(self.log, "rb") as fh:
                fh.seek(max(0, fh.seek(0, os.SEEK_END) - LOG_TAIL_BYTES))
                tail = fh.read().decode("utf-8", "replace")
        except OSError:
            return False
        return out_of_resources(0, tail)

    def alive(self) -> bool:
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
        """Start soffice and the bridge; return once the bridge is connected."""
        pipe = f"appliance_lo_{os.getpid()}_{self.slot}"
        profile = Path("/tmp") / f"lo-profile-{os.getpid()}-{self.slot}"  # noqa: S108  (sandbox tmpfs)
        (profile / "user").mkdir(parents=True, exist_ok=True)
        (profile / "user" / "registrymodifications.xcu").write_text(PROFILE_SETTINGS)
        (profile / "tmp").mkdir(exist_ok=True)
        self.log = profile / "soffice.log"
        with open(self.log, "wb") as log:  # the child keeps its own copy
            self.soffice = self._soffice(pipe, profile, log)
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
        ready = self.read(time.monotonic() + START_TIMEOUT + 5)
        if not ready or not ready.get("ready"):
            self.stop()
            raise PermanentError("LibreOffice did not start", code="ENGINE_UNAVAILABLE")

    def _soffice(self, pipe: str, profile: Path, log: IO[bytes]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
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
            stderr=log,
            process_group=0,
            env={**os.environ, "TMPDIR": str(profile / "tmp")},
        )

    def read(self, deadline: float) -> dict[str, Any] | None:
        assert self.lines is not None
        try:
            return self.lines.read(deadline)
        except TimeoutError:
            return None

    def call(self, request: dict[str, Any]) -> dict[str, Any] | None:
        """One conversion: the bridge's reply, or None when the bridge or soffice died."""
        assert self.bridge is not None and self.bridge.stdin is not None
        try:
            self.bridge.stdin.write(msgspec.json.encode(request) + b"\n")
            self.bridge.stdin.flush()
        except BrokenPipeError:
            return None
        # The helper's own wall-clock timeout bounds this wait (it kills the whole helper).
        return self.read(time.monotonic() + 24 * 3600)


class _Listener:
    """The warm LibreOffice of one helper, restarted as described above. The replacement
    starts in the background PRESTART conversions (at most half the span) before the restart
    is due and takes over after ``restart_after`` conversions (or, if it is still starting
    then, once it has started), so a restart costs the conversions no wait (a start takes
    about a second, ten light conversions' worth, more on a busy machine)."""

    def __init__(self, restart_after: int) -> None:
        self.restart_after = restart_after
        self.current: _Instance | None = None
        self.served = 0
        self._next: _Instance | None = None
        self._next_started: threading.Thread | None = None
        self._next_error: BaseException | None = None

    def stop(self) -> None:
        replacement = self._take_next()  # waits for one being started, to stop it too
        for instance in (self.current, replacement):
            if instance is not None:
                instance.stop()
        self.current = None

    def _prestart(self) -> None:
        slot = 1 - self.current.slot if self.current else 0
        self._next, self._next_error = _Instance(slot), None

        def run() -> None:
            try:
                assert self._next is not None
                self._next.start()
            except BaseException as exc:  # the switch then starts one itself
                self._next_error = exc

        self._next_started = threading.Thread(target=run, daemon=True, name="office-prestart")
        self._next_started.start()

    def _take_next(self) -> _Instance | None:
        """The replacement once its start has ended (None if it did not start)."""
        if self._next_started is not None:
            self._next_started.join()
            self._next_started = None
        instance, self._next = self._next, None
        if instance is not None and (self._next_error is not None or not instance.alive()):
            instance.stop()
            return None
        return instance

    def _switch(self) -> None:
        """To the replacement if one is started or starting, else to a fresh instance."""
        old = self.current
        self.current = self._take_next()
        if old is not None:
            old.stop()
        if self.current is None:
            self.current = _Instance(1 - old.slot if old else 0)
            self.current.start()
        self.served = 0

    def convert(self, request: dict[str, Any]) -> None:
        # A replacement still starting when the restart is due (a start is slow on a busy
        # machine) lets the old instance go on until it is ready: no conversion waits for it.
        starting = self._next_started is not None and self._next_started.is_alive()
        due = self.served >= self.restart_after and not starting
        if self.current is None or not self.current.alive() or due:
            self._switch()
        assert self.current is not None
        if self._next is None and self.served >= self.restart_after - min(
            PRESTART, self.restart_after // 2
        ):
            self._prestart()
        self.served += 1
        reply = self.current.call(request)
        if reply is None or (not reply.get("ok") and not self.current.alive()):
            self._died(reply is None)
        assert reply is not None
        if not reply.get("ok"):
            error = str(reply.get("error", "unknown error"))
            if out_of_resources(0, error) or RESOURCE_ERROR.search(error):
                raise _limit()
            raise PermanentError(
                f"LibreOffice could not convert the document: {error}", code="INVALID_INPUT_FILE"
            )

    def _died(self, on_document: bool) -> None:
        """soffice (or its bridge) died during a conversion: replaced for the next one, and
        the reason told apart: a memory limit, the document (the bridge was lost with it),
        or LibreOffice itself (the bridge saw it go: worth another attempt)."""
        assert self.current is not None
        limit = self.current.out_of_memory()
        self.current.stop()
        if limit:
            raise _limit()
        if on_document:
            raise PermanentError("LibreOffice crashed on this document", code="ENGINE_CRASHED")
        raise RetryableError("LibreOffice stopped during the conversion", code="ENGINE_CRASHED")


def _limit() -> PermanentError:
    return PermanentError(
        "LibreOffice needs more memory than the engine may use for this document",
        code="ENGINE_LIMIT",
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
        family="office",
        cost=2.0,  # heavier than pandoc where both can do a pair
        # Workbook to workbook is LibreOffice's, below the data engine's 0.5 (directly or
        # through a data format): that engine keeps one sheet's values and drops the other
        # sheets, formatting, formulas and pictures (a workbook of pictures has no table).
        # A doc is the docx made first, so it holds what that one does: a picture's or a
        # PDF's docx keeps the pictures (ocr-document 1.9, pdf-document 1.95, then this: 2.9,
        # 2.95), where the route through their text (tesseract 1.5 or pdfium 1, then txt to
        # doc 2.0) would drop them.
        pair_costs={("xlsx", "ods"): 0.4, ("ods", "xlsx"): 0.4, ("docx", "doc"): 1.0},
        requires=("soffice",),
        packages=(
            "libreoffice-writer-nogui",
            "libreoffice-calc-nogui",
            "libreoffice-impress-nogui",
            "python3-uno",  # office_bridge.py runs under the system Python with uno
            *LAYOUT_FONTS,  # fonts to render with: the deploy skips recommended packages
        ),
        recycles_itself=True,  # the listener restarts after APPLIANCE_OFFICE_RESTART_AFTER
        # The listener's profile (its temporary files too, TMPDIR) and the socket of its UNO
        # pipe, which LibreOffice puts in /tmp whatever TMPDIR says: both outlive a conversion.
        keeps=("lo-profile-*", "OSL_PIPE_*"),
    )

    def __init__(self) -> None:
        self._listener: _Listener | None = None
        # One conversion at a time per listener. In a sandboxed helper there is one thread
        # anyway; with APPLIANCE_SANDBOX=off worker threads share this engine.
        self._lock = threading.Lock()

    def _warm(self) -> _Listener:
        if self._listener is None:
            restart_after = int(os.environ.get("APPLIANCE_OFFICE_RESTART_AFTER", "1000"))
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
        if src_format in ("csv", "txt"):  # their import filters are told UTF-8 (below)
            src = as_utf8(src, dst.with_name(f"utf8-{src.name}"))
        if src_format == "csv":
            check_sheet_size(src)
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
