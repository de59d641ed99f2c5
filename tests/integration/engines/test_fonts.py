"""Faithful fonts: documents that name Calibri, Cambria, Arial and Times New Roman are set in
their metric-compatible substitutes (Carlito, Caladea, Liberation Sans, Liberation Serif), CJK
text in Noto CJK with every glyph there, and real documents keep the page count their
authoring application recorded. Converted by the office engine in its sandboxed helper (which
must see the host's fonts); read back with poppler (pdffonts, pdftotext), PDFium's font of each
character, fontconfig's coverage and pikepdf's page count."""

from __future__ import annotations

import ctypes
import re
import subprocess
import zipfile
from pathlib import Path

import pikepdf
import pypdfium2
import pypdfium2.raw as pdfium_c
import pytest

from appliance.engines.office import OfficeEngine, OfficeOptions
from appliance.engines.sandbox import SandboxedEngine
from tests.integration.engines.corpus import CORPUS

W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
# font a run names -> the substitute's name as the PDF embeds it (without the subset tag)
LATIN = {
    "Calibri": "Carlito",
    "Cambria": "Caladea",
    "Arial": "LiberationSans",
    "Times New Roman": "LiberationSerif",
}
CJK = {
    "zh-CN": ("SimSun", "中文文本测试\uff0c简体字。"),
    "ja-JP": ("MS Mincho", "日本語のテキストです。"),
}
CJK |= {"ko-KR": ("Malgun Gothic", "한국어 텍스트입니다")}


def _run(text: str, font: str | None = None, east: str | None = None, lang: str = "") -> str:
    fonts = f' w:ascii="{font}" w:hAnsi="{font}" w:cs="{font}"' if font else ""
    fonts += f' w:eastAsia="{east}"' if east else ""
    props = f"<w:rFonts{fonts}/>" + (f'<w:lang w:eastAsia="{lang}"/>' if lang else "")
    return f'<w:r><w:rPr>{props}</w:rPr><w:t xml:space="preserve">{text}</w:t></w:r>'


def _sentence(font: str) -> str:
    return f"{font} sentence set for the fidelity test."


def _write_docx(path: Path) -> None:
    """A docx written here, byte by byte: a paragraph per Latin font, one per CJK script."""
    runs = [_run(_sentence(font), font) for font in LATIN]
    runs += [_run(text, east=font, lang=lang) for lang, (font, text) in CJK.items()]
    body = "".join(f"<w:p>{r}</w:p>" for r in runs)
    document = (
        f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><w:document xmlns:w="{W}">'
        f'<w:body>{body}<w:sectPr><w:pgSz w:w="11906" w:h="16838"/></w:sectPr></w:body>'
        "</w:document>"
    )
    types = (
        '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/'
        'package/2006/content-types"><Default Extension="rels" ContentType="application/'
        'vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType='
        '"application/xml"/><Override PartName="/word/document.xml" ContentType="application/'
        'vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>'
    )
    rels = (
        '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.'
        'openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://'
        "schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument"
        '" Target="word/document.xml"/></Relationships>'
    )
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("[Content_Types].xml", types)
        z.writestr("_rels/.rels", rels)
        z.writestr("word/document.xml", document)


def _to_pdf(pool, src: Path, fmt: str, dst: Path) -> Path:
    SandboxedEngine(OfficeEngine(), pool).convert(
        src, dst, fmt, "pdf", OfficeOptions(), lambda f: None
    )
    return dst


def _pdffonts(path: Path) -> set[str]:
    """The embedded fonts' names as pdffonts lists them, subset tags (ABCDEF+) dropped."""
    out = subprocess.run(["pdffonts", str(path)], capture_output=True, text=True, check=True)
    names = {line.split()[0] for line in out.stdout.splitlines()[2:] if line.strip()}
    return {name.split("+", 1)[-1] for name in names}


def _char_fonts(path: Path) -> list[tuple[str, str]]:
    """Each character of the PDF's text with the font PDFium says it is drawn in."""
    doc = pypdfium2.PdfDocument(str(path))
    out = []
    try:
        for page in doc:
            text = page.get_textpage()
            for index in range(text.count_chars()):
                name = ctypes.create_string_buffer(256)
                flags = ctypes.c_int()
                pdfium_c.FPDFText_GetFontInfo(text.raw, index, name, 256, ctypes.byref(flags))
                out.append((text.get_text_range(index, 1), name.value.decode()))
    finally:
        doc.close()
    return out


@pytest.fixture(scope="module")
def generated(pool, tmp_path_factory):
    root = tmp_path_factory.mktemp("fonts")
    _write_docx(root / "fonts.docx")
    return _to_pdf(pool, root / "fonts.docx", "docx", root / "fonts.pdf")


def test_named_fonts_are_set_in_their_metric_compatible_substitutes(generated):
    used = _pdffonts(generated)
    for substitute in LATIN.values():
        assert any(name.startswith(substitute) for name in used), (substitute, used)
    assert not any("DejaVu" in name for name in used), used  # no fallback font anywhere
    text = "".join(c for c, _ in _char_fonts(generated))
    fonts = dict(_char_fonts(generated))
    for font, substitute in LATIN.items():
        sentence = _sentence(font)
        assert sentence in text
        drawn = {f for c, f in _char_fonts(generated) if c in sentence and c.strip()}
        assert any(f.startswith(substitute) for f in drawn), (font, drawn, fonts)


def test_cjk_text_is_in_noto_cjk_with_every_glyph(generated):
    chars = _char_fonts(generated)
    pdftext = subprocess.run(
        ["pdftotext", str(generated), "-"], capture_output=True, text=True, check=True
    ).stdout
    for _, text in CJK.values():
        assert text in pdftext  # every character came back
        for char in {c for c in text if not c.isspace()}:
            drawn = {f for c, f in chars if c == char}
            assert drawn and all(re.match(r"Noto(Sans|Serif)CJK", f) for f in drawn), (
                char,
                drawn,
            )
    # and the fonts drawing them hold their glyphs (fontconfig reads the installed files)
    every = sorted({ord(c) for _, text in CJK.values() for c in text if not c.isspace()})
    charset = " ".join(f"{cp:x}" for cp in every)
    covering = subprocess.run(
        ["fc-list", f":charset={charset}", "family"], capture_output=True, text=True, check=True
    ).stdout
    assert "Noto Sans CJK" in covering and "Noto Serif CJK" in covering


def _recorded_pages(path: Path) -> int | None:
    """The page (or slide) count the authoring application wrote in docProps/app.xml."""
    with zipfile.ZipFile(path) as z:
        if "docProps/app.xml" not in z.namelist():
            return None
        found = re.search(rb"<(?:Pages|Slides)>(\d+)</", z.read("docProps/app.xml"))
    return int(found.group(1)) if found else None


# Counts that are not the authoring application's: pandoc's pptx writer keeps its
# template's docProps/app.xml (1 slide) whatever the deck holds (7 slides here).
STALE = {"pandoc-layouts-moved.pptx"}
RECORDED = [
    path.name
    for path in sorted(CORPUS.glob("*.docx")) + sorted(CORPUS.glob("*.pptx"))
    if _recorded_pages(path) is not None and path.name not in STALE
]


@pytest.mark.parametrize("name", RECORDED)
def test_real_documents_keep_the_page_count_they_record(pool, tmp_path, name):
    src = CORPUS / name
    pdf = _to_pdf(pool, src, src.suffix[1:], tmp_path / "out.pdf")
    with pikepdf.open(pdf) as doc:
        assert len(doc.pages) == _recorded_pages(src)
    used = _pdffonts(pdf)
    assert not any("DejaVu" in f for f in used), used  # every named font had a substitute
