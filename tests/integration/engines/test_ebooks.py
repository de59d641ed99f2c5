"""Every direct pair of the calibre engine converts a book made here, in the sandboxed helper,
and the output is checked by parsing it: epub as a zip with its OPF and spine, mobi/azw3 by
their Palm database and MOBI headers and their decompressed text, fb2 as XML, docx by its
document part, pdf by PDFium's page count and text."""

from __future__ import annotations

import os
import struct
import subprocess
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path, PurePosixPath

import pypdfium2
import pytest

from appliance.engines.ebooks import INPUTS, OUTPUTS, CalibreEngine, EbookOptions
from appliance.engines.formats import mismatch
from appliance.engines.sandbox import SandboxedEngine
from appliance.errors import PermanentError

SENTENCE = "The heron waited by the quiet river"
HOST_QT = {"QT_QPA_PLATFORM": "offscreen", "QTWEBENGINE_CHROMIUM_FLAGS": "--no-sandbox"}


@pytest.fixture(scope="module")
def books(tmp_path_factory):
    """One small book per input format: epub, docx and fb2 written by pandoc, mobi, azw3 and pdf
    made from that epub by calibre on the host."""
    root = tmp_path_factory.mktemp("books")
    md = root / "book.md"
    md.write_text(f"# Chapter one\n\n{SENTENCE}.\n\n# Chapter two\n\nA second page of text.\n")
    made = {}
    for fmt, writer in (("epub", "epub3"), ("docx", "docx"), ("fb2", "fb2")):
        out = root / f"book.{fmt}"
        subprocess.run(
            ["pandoc", "-s", "--metadata", "title=Heron", "-t", writer, "-o", str(out), str(md)],
            check=True,
        )
        made[fmt] = out
    for fmt in ("mobi", "azw3", "pdf"):
        out = root / f"book.{fmt}"
        subprocess.run(
            ["ebook-convert", str(made["epub"]), str(out)],
            check=True,
            capture_output=True,
            env={**os.environ, **HOST_QT},
        )
        made[fmt] = out
    return made


def _epub_text(path: Path) -> str:
    with zipfile.ZipFile(path) as z:
        assert z.namelist()[0] == "mimetype"
        assert z.read("mimetype") == b"application/epub+zip"
        container = ET.fromstring(z.read("META-INF/container.xml"))
        opf_path = next(e.get("full-path") for e in container.iter() if e.get("full-path"))
        opf = ET.fromstring(z.read(opf_path))
        ns = {"opf": "http://www.idpf.org/2007/opf"}
        manifest = {i.get("id"): i.get("href") for i in opf.findall(".//opf:manifest/opf:item", ns)}
        spine = [i.get("idref") for i in opf.findall(".//opf:spine/opf:itemref", ns)]
        assert spine, "an epub's OPF lists its reading order"
        base = PurePosixPath(opf_path).parent
        return " ".join(
            z.read(str(base / manifest[idref])).decode("utf-8", "replace") for idref in spine
        )


def _palmdoc_decompress(data: bytes) -> bytes:
    """PalmDOC (LZ77) decompression, as MOBI text records use it."""
    out = bytearray()
    i = 0
    while i < len(data):
        c = data[i]
        i += 1
        if c == 0 or 0x09 <= c <= 0x7F:
            out.append(c)
        elif 0x01 <= c <= 0x08:
            out += data[i : i + c]
            i += c
        elif c >= 0xC0:
            out += b" " + bytes([c ^ 0x80])
        else:
            if i >= len(data):
                break
            pair = (c << 8) | data[i]
            i += 1
            distance, length = (pair >> 3) & 0x7FF, (pair & 7) + 3
            for _ in range(length):
                if distance == 0 or distance > len(out):
                    break
                out.append(out[-distance])
    return bytes(out)


def _mobi_text(path: Path) -> tuple[int, str]:
    """(MOBI file version, text of the book) from the Palm database's records."""
    data = path.read_bytes()
    assert data[60:68] == b"BOOKMOBI"
    count = struct.unpack(">H", data[76:78])[0]
    offsets = [struct.unpack(">I", data[78 + 8 * n : 82 + 8 * n])[0] for n in range(count)]
    offsets.append(len(data))
    record0 = data[offsets[0] : offsets[1]]
    compression, _, _, text_records = struct.unpack(">HHIH", record0[:10])
    assert record0[16:20] == b"MOBI"
    version = struct.unpack(">I", record0[36:40])[0]
    text = b""
    for n in range(1, text_records + 1):
        record = data[offsets[n] : offsets[n + 1]]
        text += _palmdoc_decompress(record) if compression == 2 else record
    return version, text.decode("utf-8", "replace")


def _fb2_text(path: Path) -> str:
    root = ET.fromstring(path.read_bytes())
    assert root.tag.endswith("FictionBook")
    body = next(e for e in root if e.tag.endswith("body"))
    return " ".join(body.itertext())


def _docx_text(path: Path) -> str:
    with zipfile.ZipFile(path) as z:
        document = ET.fromstring(z.read("word/document.xml"))
    return " ".join(document.itertext())


def _pdf_text(path: Path) -> str:
    doc = pypdfium2.PdfDocument(str(path))
    try:
        assert len(doc) >= 1
        return " ".join(page.get_textpage().get_text_bounded() for page in doc)
    finally:
        doc.close()


def _text_of(path: Path, fmt: str) -> str:
    if fmt in ("mobi", "azw3"):
        version, text = _mobi_text(path)
        assert version == (8 if fmt == "azw3" else 6)  # KF8 for azw3, the classic format for mobi
        return text
    return {"epub": _epub_text, "fb2": _fb2_text, "docx": _docx_text, "pdf": _pdf_text}[fmt](path)


PAIRS = [(a, b) for a in INPUTS for b in OUTPUTS if a != b]


def test_every_pair_of_the_descriptor_is_tested_here():
    assert set(PAIRS) == set(CalibreEngine.descriptor.conversions)


@pytest.mark.parametrize(("src_fmt", "dst_fmt"), PAIRS, ids=[f"{a}-{b}" for a, b in PAIRS])
def test_calibre_pair_converts_and_keeps_the_text(pool, books, tmp_path, src_fmt, dst_fmt):
    dst = tmp_path / f"out.{dst_fmt}"
    SandboxedEngine(CalibreEngine(), pool).convert(
        books[src_fmt], dst, src_fmt, dst_fmt, EbookOptions(), lambda f: None
    )
    assert mismatch(dst_fmt, dst) is None
    text = " ".join(_text_of(dst, dst_fmt).split())
    assert SENTENCE in text


def test_a_damaged_book_is_invalid_input(pool, books, tmp_path):
    # A damaged mobi: epub, docx and the other zip containers stop at the container check
    # before calibre sees them (tests/integration/engines/test_hostile.py).
    damaged = tmp_path / "bad.mobi"
    damaged.write_bytes(books["mobi"].read_bytes()[:300])
    with pytest.raises(PermanentError) as info:
        SandboxedEngine(CalibreEngine(), pool).convert(
            damaged, tmp_path / "o.epub", "mobi", "epub", EbookOptions(), lambda f: None
        )
    assert info.value.code == "INVALID_INPUT_FILE"
    # the client's message is stable; calibre's own words go to the helper's log
    assert info.value.message == "calibre could not convert the input"
