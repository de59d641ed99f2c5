"""Chromium, warm in the sandboxed helper: html to PDF and screenshots with the page options,
no network and no files for a local document (with controls that show the same page leaking
in a plain browser), and the browser restarted after N pages or when it dies."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pypdfium2
import pytest
import pyvips

from appliance.engines.chromium import CHROMIUM, ChromiumEngine, ChromiumOptions
from appliance.engines.formats import mismatch
from appliance.engines.sandbox import Limits, SandboxedEngine
from appliance.errors import RetryableError
from tests.harness.origin import always, serve
from tests.integration.engines.netwatch import (
    Dial,
    DialerEngine,
    Watch,
    dialer_pool,
    send_control,
)

SECRET = next(  # a line of a file the sandbox can see (under /usr), for file:// attempts
    line.split("=", 1)[1].strip('"')
    for line in Path("/usr/lib/os-release").read_text().splitlines()
    if line.startswith("PRETTY_NAME=")
)
THREE_PAGES = (
    "<html><body>"
    + "".join(
        f'<h1 style="page-break-before: always">Chapter {n}</h1><p>Text {n}</p>' for n in (1, 2, 3)
    )
    + "</body></html>"
)


@pytest.fixture(scope="module")
def pool(work_root):
    """Helpers serving every enabled engine and the dialer (netwatch.py: the network
    control runs in the very sandbox Chromium used)."""
    limits = Limits(timeout_seconds=90, chromium_restart_after=3)
    pool = dialer_pool(work_root / f"test_chromium-{os.getpid()}", limits)
    yield pool
    pool.close()


def convert(pool, tmp_path, html, dst_format, name="page", **options):
    src = tmp_path / f"{name}.html"
    src.write_text(html)
    dst = tmp_path / f"{name}.{dst_format}"
    SandboxedEngine(ChromiumEngine(), pool).convert(
        src, dst, "html", dst_format, ChromiumOptions(**options), lambda f: None
    )
    assert dst.stat().st_size > 0 and mismatch(dst_format, dst) is None
    return dst


def pdf_pages(path: Path) -> list[tuple[float, float, str]]:
    """Each page's width and height in points and its text."""
    pdf = pypdfium2.PdfDocument(path)
    try:
        return [(p.get_width(), p.get_height(), p.get_textpage().get_text_range()) for p in pdf]
    finally:
        pdf.close()


def test_html_to_pdf_keeps_the_documents_pages_and_text(pool, tmp_path):
    pages = pdf_pages(convert(pool, tmp_path, THREE_PAGES, "pdf"))
    assert len(pages) == 3
    assert [("Chapter 1" in t, "Chapter 3" in t) for _, _, t in pages][::2] == [
        (True, False),
        (False, True),
    ]
    width, height, _ = pages[0]
    assert (round(width / 72 * 2.54, 1), round(height / 72 * 2.54, 1)) == (21.0, 29.7)  # A4


def test_paper_orientation_scale_and_page_ranges(pool, tmp_path):
    letter = pdf_pages(
        convert(
            pool,
            tmp_path,
            THREE_PAGES,
            "pdf",
            page_format="letter",
            page_orientation="landscape",
            pages="2-3",
        )
    )
    assert len(letter) == 2 and "Chapter 2" in letter[0][2]
    # 11 x 8.5 in, landscape (Chromium rounds to its pixels)
    assert abs(letter[0][0] - 792) <= 2 and abs(letter[0][1] - 612) <= 2
    custom = pdf_pages(convert(pool, tmp_path, "<p>x</p>", "pdf", page_width=10, page_height=15))
    assert (round(custom[0][0] / 72 * 2.54), round(custom[0][1] / 72 * 2.54)) == (10, 15)


def test_header_footer_and_css_media_type(pool, tmp_path):
    html = (
        "<style>@media print {.screen {display: none}} @media screen {.print {display: none}}"
        '</style><p class="print">Printed text</p><p class="screen">Screen text</p>'
    )
    printed = pdf_pages(
        convert(
            pool,
            tmp_path,
            html,
            "pdf",
            display_header_footer=True,
            header_template='<div style="font-size:10px">Header here</div>',
            footer_template='<div style="font-size:10px">Page <span class="pageNumber"></span>'
            ' of <span class="totalPages"></span></div>',
            margin_top=20,
            margin_bottom=20,
        )
    )[0][2]
    assert "Printed text" in printed and "Screen text" not in printed
    assert "Header here" in printed and "Page 1 of 1" in printed
    screen = pdf_pages(convert(pool, tmp_path, html, "pdf", name="s", css_media_type="screen"))
    assert "Screen text" in screen[0][2] and "Printed text" not in screen[0][2]


def test_waits_for_an_element_an_expression_and_a_delay(pool, tmp_path):
    late = (
        "<p>Early</p><script>setTimeout(() => {{ const p = document.createElement('p');"
        " p.id = 'late'; p.textContent = 'Late text'; document.body.append(p);"
        " window.ready = true; }}, {ms});</script>"
    )
    eager = pdf_pages(convert(pool, tmp_path, late.format(ms=1500), "pdf", name="eager"))
    assert "Late text" not in eager[0][2]  # the control: without a wait it is not there yet
    for name, wait in (
        ("element", {"wait_for_element": "#late"}),
        ("expression", {"wait_for_expression": "window.ready === true"}),
        ("delay", {"wait_time": 2500}),
    ):
        text = pdf_pages(convert(pool, tmp_path, late.format(ms=1500), "pdf", name=name, **wait))
        assert "Late text" in text[0][2], name


@pytest.mark.parametrize("fmt", ["png", "jpg", "webp"])
def test_screenshots_have_the_asked_size_and_paint_the_page(pool, tmp_path, fmt):
    html = '<body style="margin:0;background:#ff0000"><div style="height:3000px"></div></body>'
    clipped = pyvips.Image.new_from_file(
        str(convert(pool, tmp_path, html, fmt, screenshot_width=640, screenshot_height=480))
    )
    assert (clipped.width, clipped.height) == (640, 480)
    red, green, blue = clipped.getpoint(320, 240)[:3]
    assert red > 200 and green < 60 and blue < 60
    full = pyvips.Image.new_from_file(
        str(convert(pool, tmp_path, html, fmt, name="full", screenshot_width=500))
    )
    assert (full.width, full.height) == (500, 3000)  # no height: the whole page


# --- the network and the files: a local document reaches neither ---

LEAKY_PAGE = """<html><body><p>Marker</p>
<img src="{url}"><iframe src="{url}"></iframe><iframe src="file:///usr/lib/os-release"></iframe>
<link rel="stylesheet" href="{url}">
<script>
fetch("{url}").then(r => r.text()).then(t => document.body.append("FETCHED " + t));
try {{
  const x = new XMLHttpRequest(); x.open("GET", "file:///usr/lib/os-release", false); x.send();
  document.body.append("FILE " + x.responseText);
}} catch (e) {{}}
</script></body></html>"""


@contextlib.contextmanager
def watching(pool, tmp_path) -> Iterator[Watch]:
    """A watch on the next conversion's helper (netwatch.py); on leaving, the control: the
    dialer in that helper connects to the watched port and the watch must see exactly that
    connection inside the sandbox, and none on the host."""
    dial_src = tmp_path / "dial.txt"
    dial_src.write_text("")
    dialer = SandboxedEngine(DialerEngine(), pool)
    dialer.convert(dial_src, tmp_path / "idle.txt", "txt", "txt", Dial(), lambda f: None)
    helper_pid = pool.helper().proc.pid
    watch = Watch(helper_pid)
    try:
        yield watch
        assert pool.helper().proc.pid == helper_pid, "the helper was replaced: no control"
        dst = tmp_path / "dialled.txt"
        dialer.convert(dial_src, dst, "txt", "txt", Dial(port=watch.port), lambda f: None)
        assert dst.read_text() == "connected"
        assert watch.inside.strangers_before_control(10) == 0, "it connected in the sandbox"
        with socket.create_connection(("127.0.0.1", watch.port), timeout=2) as conn:
            send_control(conn)
        assert watch.host.strangers_before_control(10) == 0, "a connection reached the host"
    finally:
        watch.close()


def test_a_local_document_reaches_no_network_and_no_file(pool, tmp_path):
    with watching(pool, tmp_path) as watch:
        pdf = convert(
            pool, tmp_path, LEAKY_PAGE.format(url=watch.url), "pdf", wait_until="networkidle0"
        )
    text = "".join(t for _, _, t in pdf_pages(pdf))
    assert "Marker" in text
    assert SECRET not in text and "FILE" not in text and "FETCHED" not in text


def test_control_the_same_page_leaks_in_a_plain_browser(tmp_path):
    """The page's requests and file reads do work when nothing stops them: a plain headless
    chromium, outside any sandbox, opening it as a file with file access allowed, reaches the
    listener and prints the file. So the test above would have seen a leak."""
    with serve(always(b"leaked body", Access_Control_Allow_Origin="*")) as origin:
        page = tmp_path / "leaky.html"
        page.write_text(LEAKY_PAGE.format(url=origin.url("/picture.png")))
        out = tmp_path / "leaky.pdf"
        subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--allow-file-access-from-files",
                "--virtual-time-budget=5000",
                f"--print-to-pdf={out}",
                page.as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=90,
        )
    text = "".join(t for _, _, t in pdf_pages(out))
    assert origin.requests and SECRET in text and "FETCHED leaked body" in text


# --- warm, restarted after N pages, replaced when it dies ---


def _chromium_pids(helper_pid: int) -> set[int]:
    """The helper's browser processes (their main one: no --type= argument)."""
    pids, todo = set(), [helper_pid]
    while todo:
        pid = todo.pop()
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            for task in Path(f"/proc/{pid}/task").iterdir():  # children of every thread
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
        if argv[0].endswith(b"/chromium") and not any(a.startswith(b"--type=") for a in argv):
            pids.add(pid)
    return pids


def test_the_browser_is_warm_restarted_after_n_pages_and_replaced_when_killed(pool, tmp_path):
    convert(pool, tmp_path, "<p>one</p>", "pdf", name="first")
    helper = pool.helper().proc.pid
    first = _chromium_pids(helper)
    assert len(first) == 1
    browsers = []
    for n in range(5):  # the pool restarts its browser after 3 pages
        convert(pool, tmp_path, f"<p>{n}</p>", "pdf", name=f"n{n}")
        browsers.append(frozenset(_chromium_pids(helper)))
    assert pool.helper().proc.pid == helper, "the helper itself was not replaced"
    assert len(set(browsers)) >= 2 and all(len(b) == 1 for b in browsers)
    (victim,) = browsers[-1]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while victim in _chromium_pids(helper) and time.monotonic() < deadline:
        time.sleep(0.1)
    # the page that meets the dead browser may fail (retryable: not the document's fault)
    with contextlib.suppress(RetryableError):
        convert(pool, tmp_path, "<p>after</p>", "pdf", name="after")
    text = pdf_pages(convert(pool, tmp_path, "<p>again</p>", "pdf", name="again"))[0][2]
    assert "again" in text and victim not in _chromium_pids(helper)


# --- one document after another in the warm page: nothing passes between them ---

WRITER = """<p>Writer</p><script>
localStorage.setItem("left", "LEFT-IN-STORAGE"); sessionStorage.setItem("s", "LEFT-IN-SESSION");
document.cookie = "left=LEFT-IN-COOKIE; max-age=3600"; window.name = "LEFT-IN-NAME";
indexedDB.open("left").onupgradeneeded = (e) => e.target.result.createObjectStore("x");
document.body.append(" read back: " + localStorage.getItem("left") + " " + document.cookie);
</script>"""
READER = """<p>Reader</p><p id="out"></p><script>
const out = document.getElementById("out");
out.append(" storage:" + localStorage.getItem("left") + " session:" + sessionStorage.getItem("s")
  + " cookie:" + document.cookie + " name:" + window.name + " history:" + history.length);
indexedDB.databases().then(d => out.append(" idb:" + d.map(x => x.name).join(",")))
  .finally(() => { window.done = true; });
</script>"""


def test_a_document_sees_nothing_the_previous_one_left(pool, tmp_path):
    written = pdf_pages(convert(pool, tmp_path, WRITER, "pdf", name="writer"))[0][2]
    assert "read back: LEFT-IN-STORAGE left=LEFT-IN-COOKIE" in written  # the control
    read = pdf_pages(
        convert(pool, tmp_path, READER, "pdf", name="reader", wait_for_expression="window.done")
    )[0][2]
    assert "Reader" in read and "storage:null session:null cookie: name: history:" in read
    assert "LEFT" not in read and "idb:" in read and "idb:left" not in read
