"""Hostile inputs end in a clear task error (or a harmless result), inside the sandbox, within
the timeout, with the helper replaced if it died: truncated files, decompression and zip
bombs, SVG and office documents that link to remote content, documents with macros (a
LibreOffice Basic macro in an ODT, a VBA macro in a DOCM)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
import zipfile
from collections.abc import Iterator

import pypdfium2
import pytest
import pyvips

from appliance.engines.enabled import enabled_engines
from appliance.engines.images import ImageEngine, ImageOptions
from appliance.engines.markup import MarkupOptions, PandocEngine
from appliance.engines.media import FfmpegEngine, MediaOptions
from appliance.engines.ocr import OcrEngine, OcrOptions
from appliance.engines.office import OfficeEngine, OfficeOptions
from appliance.engines.registry import Registry
from appliance.engines.sandbox import Limits, SandboxedEngine
from appliance.engines.vector import SvgEngine, SvgOptions
from appliance.errors import InvalidData, PermanentError
from tests.integration.engines.hostile_docs import (
    macro_docm,
    macro_odt,
    remote_image_docx,
    remote_image_odt,
    zip_bomb,
)
from tests.integration.engines.netwatch import (
    Dial,
    DialerEngine,
    Watch,
    dialer_pool,
    send_control,
)

CLEAR_CODES = {
    "INVALID_INPUT_FILE",
    "ENGINE_TIMEOUT",
    "ENGINE_CRASHED",
    "ENGINE_LIMIT",
    "CONVERSION_FAILED",
}


@pytest.fixture(scope="module")
def pool(work_root):
    """The helpers as workers run them (every enabled engine), with the dialer beside them
    (netwatch.py), so a network control runs in the very sandbox a real engine used."""
    pool = dialer_pool(work_root / f"test_hostile-{os.getpid()}", Limits(timeout_seconds=30))
    yield pool
    pool.close()


def _expect_clear_error(engine, pool, src, dst, src_fmt, dst_fmt, options):
    start = time.monotonic()
    with pytest.raises(PermanentError) as info:
        SandboxedEngine(engine, pool).convert(src, dst, src_fmt, dst_fmt, options, lambda f: None)
    assert info.value.code in CLEAR_CODES, info.value.code
    assert time.monotonic() - start < 20
    return info.value


@pytest.mark.parametrize(
    ("engine", "fmt", "target", "options"),
    [
        (ImageEngine(), "png", "webp", ImageOptions()),
        (ImageEngine(), "jpg", "png", ImageOptions()),
        (PandocEngine(), "docx", "html", MarkupOptions()),
        (FfmpegEngine(), "mp4", "webm", MediaOptions()),
        (OcrEngine(), "png", "txt", OcrOptions()),
    ],
)
def test_truncated_files_fail_clearly(pool, tmp_path, engine, fmt, target, options):
    full = tmp_path / f"full.{fmt}"
    if fmt in ("png", "jpg"):
        pyvips.Image.xyz(400, 300).extract_band(0).cast("uchar").write_to_file(str(full))
    elif fmt == "docx":
        md = tmp_path / "a.md"
        md.write_text("# hello\n\n" + "text " * 2000)
        subprocess.run(["pandoc", "-o", str(full), str(md)], check=True)
    else:
        subprocess.run(
            [
                "ffmpeg",
                "-v",
                "error",
                "-f",
                "lavfi",
                "-i",
                "testsrc=d=1:s=160x120",
                "-pix_fmt",
                "yuv420p",
                str(full),
            ],
            check=True,
        )
    data = full.read_bytes()
    cut = tmp_path / f"cut.{fmt}"
    cut.write_bytes(data[: len(data) // 3])
    _expect_clear_error(engine, pool, cut, tmp_path / f"o.{target}", fmt, target, options)


@pytest.mark.parametrize(
    ("engine", "target", "options"),
    [(ImageEngine(), "tiff", ImageOptions()), (OcrEngine(), "txt", OcrOptions())],
    ids=["vips", "tesseract"],
)
def test_image_claiming_huge_dimensions_is_refused(pool, tmp_path, engine, target, options):
    """A tiny PNG whose header claims 60000 x 60000 pixels (a decompression bomb)."""
    import struct
    import zlib

    def chunk(kind, body):
        return (
            struct.pack(">I", len(body))
            + kind
            + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        )

    row = b"\x00" + b"\x00" * 60000
    idat = zlib.compress(row * 64, 9)  # only the first rows exist
    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 60000, 60000, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", idat)
        + chunk(b"IEND", b"")
    )
    src = tmp_path / "bomb.png"
    src.write_bytes(png)
    _expect_clear_error(engine, pool, src, tmp_path / f"o.{target}", "png", target, options)


# --- zip bombs, macros, remote links (office containers) ---


@pytest.fixture(scope="module")
def office_bases(pool, tmp_path_factory):
    """Small real documents to build hostile ones from."""
    root = tmp_path_factory.mktemp("hostile-office")
    md = root / "a.md"
    md.write_text("# Title\n\nSome text.\n")
    pixel = root / "pixel.png"
    pyvips.Image.black(8, 8).write_to_file(str(pixel))
    (root / "pic.md").write_text(f"Picture: ![pic]({pixel})\n")
    out = {}
    for fmt in ("docx", "odt"):
        out[fmt] = root / f"base.{fmt}"
        subprocess.run(["pandoc", "-o", str(out[fmt]), str(md)], check=True)
    out["docx-pic"] = root / "pic.docx"
    subprocess.run(["pandoc", "-o", str(out["docx-pic"]), str(root / "pic.md")], check=True)
    csv = root / "a.csv"
    csv.write_text("a,b\n1,2\n")
    out["xlsx"] = root / "base.xlsx"
    SandboxedEngine(OfficeEngine(), pool).convert(
        csv, out["xlsx"], "csv", "xlsx", OfficeOptions(), lambda f: None
    )
    return out


ZIP_BOMBS = [
    ("docx", "word/document.xml", OfficeEngine(), "pdf", OfficeOptions()),
    ("docx", "word/document.xml", PandocEngine(), "html", MarkupOptions()),
    ("odt", "content.xml", OfficeEngine(), "pdf", OfficeOptions()),
    ("xlsx", "xl/worksheets/sheet1.xml", OfficeEngine(), "pdf", OfficeOptions()),
]


@pytest.mark.parametrize(
    ("fmt", "member", "engine", "target", "options"),
    ZIP_BOMBS,
    ids=[f"{b[0]}-{b[2].descriptor.id}" for b in ZIP_BOMBS],
)
def test_zip_bomb_is_refused_before_an_engine_inflates_it(
    pool, office_bases, tmp_path, fmt, member, engine, target, options
):
    bomb = zip_bomb(office_bases[fmt], tmp_path / f"bomb.{fmt}", member, gigabytes=2.5)
    assert bomb.stat().st_size < 8 << 20  # a few megabytes that inflate to 2.5 GB
    error = _expect_clear_error(engine, pool, bomb, tmp_path / f"o.{target}", fmt, target, options)
    assert error.code == "ENGINE_LIMIT", error
    # the helper is still usable for the next, ordinary document
    SandboxedEngine(engine, pool).convert(
        office_bases[fmt], tmp_path / f"ok.{target}", fmt, target, options, lambda f: None
    )
    assert (tmp_path / f"ok.{target}").stat().st_size > 0


def test_zip_bomb_whose_headers_understate_its_size_is_refused(pool, office_bases, tmp_path):
    bomb = zip_bomb(
        office_bases["docx"], tmp_path / "liar.docx", "word/document.xml", 2.5, declared=9000
    )
    error = _expect_clear_error(
        OfficeEngine(), pool, bomb, tmp_path / "o.pdf", "docx", "pdf", OfficeOptions()
    )
    assert error.code in ("ENGINE_LIMIT", "INVALID_INPUT_FILE"), error


# Where a test document's macro writes inside the helper, if it runs: /tmp, which the helper
# may write (/job is the worker's), under a name the scrub keeps (LibreOffice's profiles), so
# a macro that ran would still be seen after the conversion.
RAN_INSIDE = "/tmp/lo-profile-MACRO_RAN"


def _ran_inside(pool) -> bool:
    return (pool.helper().workdir / ".." / RAN_INSIDE.lstrip("/")).exists()


def test_macro_bound_to_document_load_is_not_run(pool, tmp_path):
    # Control: loaded with macros allowed, outside the appliance, the document runs its macro.
    ran = tmp_path / "control-ran"
    control = macro_odt(tmp_path / "control.odt", str(ran))
    subprocess.run(
        ["/usr/bin/python3", "-c", MACROS_ALLOWED, str(tmp_path / "profile"), str(control)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert ran.exists(), "the test document's macro should run where macros are allowed"
    # The appliance converts the same document without running it.
    doc = macro_odt(tmp_path / "macro.odt", RAN_INSIDE)
    dst = tmp_path / "out.pdf"
    SandboxedEngine(OfficeEngine(), pool).convert(
        doc, dst, "odt", "pdf", OfficeOptions(), lambda f: None
    )
    assert dst.read_bytes().startswith(b"%PDF-")
    assert not _ran_inside(pool)


def test_docm_with_a_vba_macro_converts_to_pdf_without_running_it(pool, office_bases, tmp_path):
    """A macro-enabled Word document (VBA project, macroEnabled content type). By its name
    (docm) there is no route: refused at job creation. Content sniffing takes any OOXML zip
    for docx, so a client may send it as docx: LibreOffice then imports the VBA project, and
    the conversion must not run it."""
    with pytest.raises(InvalidData) as info:
        Registry(enabled_engines()).plan("docm", "pdf", {})
    assert info.value.code == "INVALID_CONVERSION_TYPE"
    # Control: where macros are allowed, LibreOffice imports the project as executable VBA and
    # the macro, called, writes its file. (LibreOffice 7.4 fires VBA's AutoOpen and
    # Document_Open only for Word 97 .doc files, so the control calls it itself.)
    ran = tmp_path / "control-ran"
    control = macro_docm(office_bases["docx"], tmp_path / "control.docm", str(ran))
    subprocess.run(
        [
            *("/usr/bin/python3", "-c", MACROS_ALLOWED, str(tmp_path / "profile"), str(control)),
            "vnd.sun.star.script:Project.Module1.AutoOpen?language=Basic&location=document",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert ran.exists(), "the test document's macro should run where macros are allowed"
    # The appliance converts the same document, sent as docx, without running it.
    doc = macro_docm(office_bases["docx"], tmp_path / "macro.docx", RAN_INSIDE)
    dst = tmp_path / "out.pdf"
    SandboxedEngine(OfficeEngine(), pool).convert(
        doc, dst, "docx", "pdf", OfficeOptions(), lambda f: None
    )
    pdf = pypdfium2.PdfDocument(str(dst))
    assert "Some text." in pdf[0].get_textpage().get_text_bounded()
    pdf.close()
    assert not _ran_inside(pool)


# Loads a document in a fresh soffice with MacroExecutionMode ALWAYS_EXECUTE_NO_WARN (4), then
# calls the macro named by a script URL, if one is given.
MACROS_ALLOWED = """
import os, signal, subprocess, sys, time, uno
from pathlib import Path
from com.sun.star.beans import PropertyValue
pipe = "hostile_control"
office = subprocess.Popen(["soffice", "--headless", "--norestore",
    "-env:UserInstallation=" + Path(sys.argv[1]).as_uri(), "--accept=pipe,name=" + pipe + ";urp;"],
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
try:
    local = uno.getComponentContext()
    resolver = local.ServiceManager.createInstanceWithContext(
        "com.sun.star.bridge.UnoUrlResolver", local)
    for _ in range(300):
        try:
            ctx = resolver.resolve("uno:pipe,name=" + pipe + ";urp;StarOffice.ComponentContext")
            break
        except Exception:
            time.sleep(0.2)
    desktop = ctx.ServiceManager.createInstanceWithContext("com.sun.star.frame.Desktop", ctx)
    mode = PropertyValue()
    mode.Name, mode.Value = "MacroExecutionMode", 4
    doc = desktop.loadComponentFromURL(uno.systemPathToFileUrl(sys.argv[2]), "_blank", 0, (mode,))
    if len(sys.argv) > 3:
        doc.getScriptProvider().getScript(sys.argv[3]).invoke((), (), ())
    doc.close(True)
finally:
    os.killpg(office.pid, signal.SIGKILL)  # soffice.bin runs below the soffice launcher
    office.wait()
"""


# --- the network: remote references are never fetched, and the sandbox has no way out ---


def _dial(pool, tmp_path, port: int, host: str = "127.0.0.1") -> str:
    src = tmp_path / "dial.txt"
    src.write_text("")
    dst = tmp_path / f"dial-{host}-{port}.txt"
    SandboxedEngine(DialerEngine(), pool).convert(
        src, dst, "txt", "txt", Dial(host=host, port=port), lambda f: None
    )
    return dst.read_text()


@contextlib.contextmanager
def _watching(pool, tmp_path) -> Iterator[Watch]:
    """A watch on the helper the next conversion gets (started first if need be); on leaving,
    the control: the dialer, in that same helper, connects to the watched port, and the watch
    must see exactly that connection inside the sandbox and none on the host. Connections
    are accepted in order, so a conversion's earlier connection would be counted first."""
    _dial(pool, tmp_path, 0)
    helper_pid = pool.helper().proc.pid
    watch = Watch(helper_pid)
    try:
        yield watch
        assert pool.helper().proc.pid == helper_pid, "the helper was replaced: no control"
        assert _dial(pool, tmp_path, watch.port) == "connected"
        assert watch.inside.strangers_before_control(10) == 0, "it connected in the sandbox"
        with socket.create_connection(("127.0.0.1", watch.port), timeout=2) as conn:
            send_control(conn)
        assert watch.host.strangers_before_control(10) == 0, "a connection reached the host"
    finally:
        watch.close()


def _host_address() -> str:
    """This host's address on its default route (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))
        return str(probe.getsockname()[0])


def test_an_engine_that_dials_reaches_only_the_sandboxes_own_loopback(pool, tmp_path):
    """The sandbox as every engine gets it: a dial to 127.0.0.1 arrives inside its own
    network namespace (the watch sees it there, not on the host), and the host's own
    address, which the same dial reaches from outside, is unreachable from inside."""
    with _watching(pool, tmp_path):
        pass  # the control itself is the test
    server = socket.create_server(("0.0.0.0", 0))  # the host's every address
    try:
        port = server.getsockname()[1]
        socket.create_connection((_host_address(), port), timeout=2).close()  # reachable here
        assert _dial(pool, tmp_path, port, _host_address()).startswith("refused:")
    finally:
        server.close()


def test_svg_external_entity_is_not_read_and_remote_href_not_fetched(pool, tmp_path):
    """An SVG whose entity names a file the sandbox can read (/usr/lib/os-release) and whose
    image links to the watched port: the PDF output has neither the file's text nor a fetch,
    while the same text through an internal entity does show (the check can see text)."""
    secret = next(
        line.split("=", 1)[1].strip('"')
        for line in open("/usr/lib/os-release").read().splitlines()  # noqa: SIM115
        if line.startswith("PRETTY_NAME=")
    )
    template = (
        '<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY xxe {entity}>]>'
        '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"'
        ' width="400" height="50"><text x="5" y="20" font-size="12">Marker &xxe;</text>'
        '<image xlink:href="{url}" width="10" height="10"/></svg>'
    )
    with _watching(pool, tmp_path) as watch:
        outputs = {}
        for name, entity in (
            ("internal", f'"{secret}"'),
            ("external", '"" SYSTEM "file:///usr/lib/os-release"'),
        ):
            src = tmp_path / f"{name}.svg"
            src.write_text(template.format(entity=entity, url=watch.url))
            dst = tmp_path / f"{name}.pdf"
            try:
                SandboxedEngine(SvgEngine(), pool).convert(
                    src, dst, "svg", "pdf", SvgOptions(), lambda f: None
                )
            except PermanentError as exc:
                assert name == "external" and exc.code in CLEAR_CODES, exc
                continue
            outputs[name] = subprocess.run(
                ["pdftotext", str(dst), "-"], capture_output=True, text=True, check=True
            ).stdout
    assert secret in outputs["internal"]  # control: entity text reaches the output
    assert secret not in outputs.get("external", "")
    assert "Debian" not in outputs.get("external", "")


REMOTE_CASES = [
    ("odt", OfficeEngine(), "pdf", OfficeOptions()),
    ("docx", OfficeEngine(), "pdf", OfficeOptions()),
    ("html", OfficeEngine(), "pdf", OfficeOptions()),
    ("html", PandocEngine(), "docx", MarkupOptions()),
    ("docx", PandocEngine(), "odt", MarkupOptions()),
    ("md", PandocEngine(), "epub", MarkupOptions()),
    ("odt", PandocEngine(), "docx", MarkupOptions()),
]


def _linked(fmt: str, office_bases, tmp_path, url: str):
    src = tmp_path / f"linked.{fmt}"
    if fmt == "odt":
        remote_image_odt(src, url)
    elif fmt == "docx":
        remote_image_docx(office_bases["docx-pic"], src, url)
    elif fmt == "md":
        src.write_text(f"Linked picture: ![picture]({url})\n")
    else:
        src.write_text(f'<html><body><p>Linked picture</p><img src="{url}"></body></html>')
    return src


@pytest.mark.parametrize(
    ("fmt", "engine", "target", "options"),
    REMOTE_CASES,
    ids=[f"{c[0]}-{c[1].descriptor.id}-{c[2]}" for c in REMOTE_CASES],
)
def test_remote_linked_images_are_not_fetched(
    pool, office_bases, tmp_path, fmt, engine, target, options
):
    """The document links a picture at the watched port; the engine must not even try it
    (it would arrive at the sandbox's own loopback, where the watch listens)."""
    with _watching(pool, tmp_path) as watch:
        src = _linked(fmt, office_bases, tmp_path, watch.url)
        dst = tmp_path / f"out.{target}"
        start = time.monotonic()
        try:
            SandboxedEngine(engine, pool).convert(src, dst, fmt, target, options, lambda f: None)
            assert dst.stat().st_size > 0  # a safe success: the document without the picture
        except PermanentError as exc:
            assert exc.code in CLEAR_CODES, exc
        assert time.monotonic() - start < 20


def test_a_picture_beside_the_document_is_still_embedded(tmp_path):
    """Pictures linked by URL are dropped (above); a relative one beside the document still
    reaches the output (the engine itself: a sandboxed job holds its one input alone)."""
    work = tmp_path / "doc"
    work.mkdir()
    pyvips.Image.black(8, 8).write_to_file(str(work / "pixel.png"))
    src = work / "pic.md"
    src.write_text("Local picture: ![pixel](pixel.png)\n")
    dst = tmp_path / "out.docx"
    PandocEngine().convert(src, dst, "md", "docx", MarkupOptions(), lambda f: None)
    with zipfile.ZipFile(dst) as doc:
        assert [n for n in doc.namelist() if n.startswith("word/media/")]
        assert "Local picture" in doc.read("word/document.xml").decode()
