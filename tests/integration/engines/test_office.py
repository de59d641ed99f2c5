"""LibreOffice, warm in the sandboxed helper: every advertised pair with outputs opened and
checked, restarts after N conversions, and a killed soffice replaced."""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import time
import zipfile
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from xml.etree import ElementTree

import openpyxl
import openpyxl.drawing.image
import pikepdf
import pytest
from PIL import Image as PILImage

from appliance.conversions.work import run_hops
from appliance.engines.enabled import enabled_engines
from appliance.engines.formats import mismatch
from appliance.engines.office import (
    CALC_IN,
    IMPRESS_IN,
    PROFILE_SETTINGS,
    WRITER_IN,
    OfficeEngine,
    OfficeOptions,
)
from appliance.engines.registry import Registry
from appliance.engines.sandbox import HelperPool, Limits, SandboxedEngine, sandboxed
from appliance.errors import PermanentError
from tests.integration.engines.pdfa import pdfa_2b_problems

SENTENCE = "Office matrix sentence"
PAIRS = sorted(OfficeEngine.descriptor.conversions)


def _convert(pool, src, dst, src_fmt, dst_fmt, options=None):
    SandboxedEngine(OfficeEngine(), pool).convert(
        src, dst, src_fmt, dst_fmt, options or OfficeOptions(), lambda f: None
    )
    assert dst.stat().st_size > 0 and mismatch(dst_fmt, dst) is None


@pytest.fixture(scope="module")
def samples(pool, tmp_path_factory):
    root = tmp_path_factory.mktemp("office")
    md = root / "s.md"
    md.write_text(f"# Title\n\n{SENTENCE}.\n\n# Second slide\n\nMore text.\n")
    out = {"txt": root / "s.txt"}
    out["txt"].write_text(f"{SENTENCE}.\n")
    for fmt, writer in (
        ("docx", "docx"),
        ("odt", "odt"),
        ("rtf", "rtf"),
        ("html", "html"),
        ("pptx", "pptx"),
    ):
        out[fmt] = root / f"s.{fmt}"
        subprocess.run(["pandoc", "-s", "-t", writer, "-o", str(out[fmt]), str(md)], check=True)
    out["csv"] = root / "s.csv"
    out["csv"].write_text(f"name,qty\n{SENTENCE},3\ngadget,5\n")
    for fmt, base in (
        ("doc", "docx"),
        ("xlsx", "csv"),
        ("ods", "csv"),
        ("xls", "csv"),
        ("odp", "pptx"),
        ("ppt", "pptx"),
    ):
        out[fmt] = root / f"s.{fmt}"
        _convert(pool, out[base], out[fmt], base, fmt)
    return out


XML_TEXT = {
    "docx": lambda names: ["word/document.xml"],
    "odt": lambda names: ["content.xml"],
    "ods": lambda names: ["content.xml"],
    "odp": lambda names: ["content.xml"],
    "pptx": lambda names: sorted(n for n in names if re.fullmatch(r"ppt/slides/slide\d+\.xml", n)),
}
# The stream a binary Office 97 file keeps its document in (OLE compound file).
OLE_STREAMS = {"doc": "WordDocument", "xls": "Workbook", "ppt": "PowerPoint Document"}


def _xml_text(path: Path, fmt: str) -> str:
    """The text nodes of the document's XML parts, read with zipfile and ElementTree."""
    with zipfile.ZipFile(path) as z:
        parts = XML_TEXT[fmt](z.namelist())
        assert parts, z.namelist()
        return " ".join("".join(ElementTree.fromstring(z.read(part)).itertext()) for part in parts)


def _ole_text(path: Path, fmt: str) -> str:
    """An Office 97 file's text as its bytes hold it (8-bit or UTF-16 strings), after
    checking it is a compound file with the stream its format needs."""
    data = path.read_bytes()
    assert data.startswith(bytes.fromhex("D0CF11E0A1B11AE1")), data[:8]
    assert OLE_STREAMS[fmt].encode("utf-16-le") in data, f"no {OLE_STREAMS[fmt]} stream"
    return data.decode("latin-1") + data.decode("utf-16-le", "replace")


def _text(path: Path, fmt: str) -> str:
    """The output's text as a reader other than LibreOffice sees it."""
    if fmt == "pdf":
        return subprocess.run(
            ["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True
        ).stdout
    if fmt == "xlsx":
        sheet = openpyxl.load_workbook(path, read_only=True).worksheets[0]
        return "\n".join(",".join(str(v) for v in row) for row in sheet.iter_rows(values_only=True))
    if fmt in XML_TEXT:
        return _xml_text(path, fmt)
    if fmt in OLE_STREAMS:
        return _ole_text(path, fmt)
    if fmt == "html":
        return _html_text(path.read_text())
    return path.read_bytes().decode("utf-8", "replace")


def _html_text(markup: str) -> str:
    chunks: list[str] = []
    parser = HTMLParser()
    parser.handle_data = chunks.append  # type: ignore[method-assign]
    parser.feed(markup)
    return "".join(chunks)


def _pdf_pages(path: Path) -> int:
    with pikepdf.open(path) as pdf:
        return len(pdf.pages)


def _expected(src_fmt: str, dst_fmt: str) -> tuple[list[str], int]:
    """Text only a faithful conversion of the sample has, and its page count in a PDF."""
    if src_fmt in CALC_IN:
        # the first column is cut where the next begins on a printed page; both rows show
        words = ["gadget", "qty"] if dst_fmt == "pdf" else [SENTENCE, "gadget"]
        return words, 1
    if src_fmt in IMPRESS_IN:
        return [SENTENCE, "Second slide", "More text"], 2  # a slide per heading
    return [SENTENCE], 1


@pytest.mark.parametrize(("src_fmt", "dst_fmt"), PAIRS)
def test_office_pair(pool, samples, tmp_path, src_fmt, dst_fmt):
    dst = tmp_path / f"out.{dst_fmt}"
    _convert(pool, samples[src_fmt], dst, src_fmt, dst_fmt)
    text = " ".join(_text(dst, dst_fmt).split())  # lines wrap anywhere
    words, pages = _expected(src_fmt, dst_fmt)
    for word in words:
        assert word in text, (word, text[:500])
    if dst_fmt == "pdf":
        assert _pdf_pages(dst) == pages
    if dst_fmt == "xlsx":  # numbers stay numbers
        sheet = openpyxl.load_workbook(dst).worksheets[0]
        assert [sheet["B2"].value, sheet["B3"].value] == [3, 5]


def test_pdf_options_select_pages_and_pdf_a(pool, samples, tmp_path):
    all_pages, first = tmp_path / "all.pdf", tmp_path / "first.pdf"
    _convert(pool, samples["pptx"], all_pages, "pptx", "pdf")
    _convert(pool, samples["pptx"], first, "pptx", "pdf", OfficeOptions(pages="1"))
    assert _pdf_pages(all_pages) == 2 and _pdf_pages(first) == 1
    assert "Second slide" not in _text(first, "pdf")
    archival, plain = tmp_path / "a.pdf", tmp_path / "plain.pdf"
    _convert(pool, samples["docx"], archival, "docx", "pdf", OfficeOptions(pdf_a=True))
    _convert(pool, samples["docx"], plain, "docx", "pdf")
    assert pdfa_2b_problems(archival) == []
    assert pdfa_2b_problems(plain)  # control: the checks see an ordinary PDF for what it is
    assert SENTENCE in _text(archival, "pdf")


def _soffice_pids(helper) -> set[int]:
    """soffice.bin processes below the helper (bwrap starts a new session inside)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])

    def below(pid):
        while pid > 1:
            pid = parents.get(pid, 0)
            if pid == helper.proc.pid:
                return True
        return False

    out = subprocess.run(["pgrep", "-f", "soffice.bin"], capture_output=True, text=True).stdout
    return {int(p) for p in out.split() if below(int(p))}


def test_listener_is_restarted_after_n_conversions_and_replaced_when_killed(
    work_root, samples, tmp_path
):
    pool = HelperPool(
        work_root / f"office-restart-{os.getpid()}",
        Limits(timeout_seconds=60, office_restart_after=3),
    )
    try:
        engine = SandboxedEngine(OfficeEngine(), pool)
        seen = []
        deadline = time.monotonic() + 60
        for i in itertools.count():
            engine.convert(
                samples["docx"],
                tmp_path / f"o{i}.pdf",
                "docx",
                "pdf",
                OfficeOptions(),
                lambda f: None,
            )
            seen.append(frozenset(_soffice_pids(pool.helper())))
            if (i >= 3 and seen[0].isdisjoint(seen[-1])) or time.monotonic() > deadline:
                break
        # Restarted after 3: the first listener serves conversions 1-3 at least, and on
        # until its replacement (started in the background one conversion before; its first
        # start in a fresh profile takes a few seconds) is up; then it is gone. (Samples may
        # also hold a replacement being started.)
        first = frozenset.intersection(*seen[:3])
        assert first and first.isdisjoint(seen[-1]), seen
        for pid in seen[-1]:
            os.kill(pid, signal.SIGKILL)  # soffice dies between two conversions
        time.sleep(0.5)
        engine.convert(
            samples["docx"],
            tmp_path / "after-kill.pdf",
            "docx",
            "pdf",
            OfficeOptions(),
            lambda f: None,
        )
        assert _pdf_pages(tmp_path / "after-kill.pdf") >= 1
        assert _soffice_pids(pool.helper()).isdisjoint(seen[-1])
    finally:
        pool.close()


def test_formats_cover_the_three_families():
    sources = {s for s, _ in PAIRS}
    assert set(WRITER_IN) | set(CALC_IN) | set(IMPRESS_IN) == sources


def test_listener_survives_200_conversions_in_a_row_with_restarts(work_root, samples, tmp_path):
    pool = HelperPool(
        work_root / f"office-200-{os.getpid()}", Limits(timeout_seconds=60, office_restart_after=50)
    )
    try:
        engine = SandboxedEngine(OfficeEngine(), pool)
        seen = []
        for i in range(200):
            src, fmt = (samples["docx"], "docx") if i % 2 else (samples["xlsx"], "xlsx")
            dst = tmp_path / f"o{i % 4}.pdf"
            engine.convert(src, dst, fmt, "pdf", OfficeOptions(), lambda f: None)
            assert _pdf_pages(dst) >= 1
            seen.append(frozenset(_soffice_pids(pool.helper())))
        # Restarted after every 50 conversions (on until its replacement, started in the
        # background 20 before, is up): the first listener serves the first 50 at least, and
        # about four serve fifty each.
        first = frozenset.intersection(*seen[:50])
        assert len(first) == 1 and first.isdisjoint(seen[-1])
        counts = Counter(pid for sample in seen for pid in sample)
        assert 3 <= sum(1 for n in counts.values() if n >= 40) <= 4, counts
    finally:
        pool.close()


def test_office_conversions_do_not_count_toward_the_helpers_replacement(
    work_root, samples, tmp_path
):
    """The listener restarts on its own schedule; the helper's (every 2 here) would restart
    it with the helper at that pace."""
    pool = HelperPool(
        work_root / f"office-recycle-{os.getpid()}",
        Limits(timeout_seconds=60, restart_after=2),
    )
    try:
        engine = SandboxedEngine(OfficeEngine(), pool)
        seen = set()
        for i in range(5):
            dst = tmp_path / f"o{i}.pdf"
            engine.convert(samples["docx"], dst, "docx", "pdf", OfficeOptions(), lambda f: None)
            assert _pdf_pages(dst) >= 1
            helper = pool.helper()
            seen.add((helper.proc.pid, frozenset(_soffice_pids(helper))))
        assert len(seen) == 1, seen
        assert pool.helper().served == 0
    finally:
        pool.close()


def test_listener_profile_settings_name_real_configuration_keys():
    """The macro and link settings written into the listener's profile are keys of this
    LibreOffice's configuration schema (a misspelt key would be ignored silently)."""
    oor = "{http://openoffice.org/2001/registry}"
    schema = ElementTree.parse("/usr/lib/libreoffice/share/registry/main.xcd").getroot()
    settings = ElementTree.fromstring(PROFILE_SETTINGS)
    items = settings.findall("item")
    assert len(items) == 3
    for item in items:
        first, *groups = item.get(f"{oor}path", "").strip("/").split("/")
        package, component = first.rsplit(".", 1)
        node = next(
            s.find("component")
            for s in schema.iter(f"{oor}component-schema")
            if s.get(f"{oor}name") == component and s.get(f"{oor}package") == package
        )
        for name in groups:
            assert node is not None
            node = next(g for g in node if g.get(f"{oor}name") == name)
        assert node is not None
        known = {p.get(f"{oor}name") for p in node if p.tag == "prop"}
        for prop in item.findall("prop"):
            assert prop.get(f"{oor}name") in known, prop.get(f"{oor}name")


def test_a_csv_wider_than_a_sheet_is_an_engine_limit_not_cut(pool, tmp_path):
    src = tmp_path / "wide.csv"
    src.write_text(",".join(f"c{n}" for n in range(20_000)) + "\n" + ",".join("1" * 20_000) + "\n")
    with pytest.raises(PermanentError) as info:
        _convert(pool, src, tmp_path / "wide.pdf", "csv", "pdf")
    assert info.value.code == "ENGINE_LIMIT"
    assert "20000 columns" in info.value.message


def test_a_workbook_of_pictures_goes_to_ods_with_them(pool, tmp_path):
    """xlsx -> ods is LibreOffice's (the data engine found no table here and would have dropped
    the picture)."""
    picture = tmp_path / "dot.png"
    PILImage.new("RGB", (40, 30), "red").save(picture)
    book = openpyxl.Workbook()
    book.active.add_image(openpyxl.drawing.image.Image(str(picture)), "B2")
    src = tmp_path / "pictures.xlsx"
    book.save(src)
    registry = Registry(sandboxed(enabled_engines(), pool))
    hops = registry.route("xlsx", "ods")
    assert [h.engine.descriptor.id for h in hops] == ["libreoffice"]
    [out] = run_hops(hops, src, tmp_path, registry.options_for(hops, {}), lambda f: None)
    with zipfile.ZipFile(out) as z:
        pictures = [n for n in z.namelist() if n.startswith(("Pictures/", "media/"))]
    assert pictures, "the picture was dropped"
