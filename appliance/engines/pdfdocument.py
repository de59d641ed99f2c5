"""PDF -> documents that keep its pictures (docx, odt, epub, html): PDFium reads each page's text
and pictures in the helper, pandoc writes the document.

Each page's pictures are placed among its text by height: the text above a picture's top edge,
the picture (as wide, in share of the text's width, as it is of the page), then the text below,
and so on down the page; text comes in PDFium's reading order, a paragraph per line, as the
text route (pdf -> txt -> docx) has it. In docx each page starts a new page. What is drawn with
vector paths (charts, lines, a logo as outlines), columns and the page's exact layout are not
kept: that would take LibreOffice's PDF import, whose frames per line are slower by tens of
seconds a page and hard to edit. Pictures keep their pixels (JPEG data as JPEG, everything else
as PNG); images smaller than ``MIN_PICTURE_POINTS`` on the page (rules, bullets, spacers) are
left out. A PDF with neither text nor pictures is ``NO_TEXT_FOUND``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import msgspec

from appliance.engines import Descriptor, Progress
from appliance.engines.markup import paragraphs, picture_block, write_pictured_document
from appliance.engines.pdf import PagesSpec, open_pdfium, page_numbers, pdfium_version
from appliance.engines.pixels import check_pixels
from appliance.engines.tools import tool_version
from appliance.errors import PermanentError

DOCUMENTS = ("docx", "odt", "epub", "html")
MIN_PICTURE_POINTS = 12.0  # a picture's smaller side on the page, in points (1/72 in)
# A page break in Word's XML: a paragraph whose only run breaks the page.
DOCX_PAGE_BREAK = {
    "t": "RawBlock",
    "c": ["openxml", '<w:p><w:r><w:br w:type="page"/></w:r></w:p>'],
}
_IMAGE_OBJECT = 3  # FPDF_PAGEOBJ_IMAGE


class PdfDocumentOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pages: PagesSpec | None = None


def _save_picture(image: Any, stem: Path) -> Path | None:
    """The image object's pixels as a file pandoc embeds; None where PDFium cannot decode
    them (the text is worth more than failing on one broken picture)."""
    import pypdfium2

    width, height = image.get_px_size()
    check_pixels(width, height, what="A picture in the PDF")
    try:
        pil = image.get_bitmap(render=False).to_pil()
        lossy = "DCTDecode" in image.get_filters()
    except pypdfium2.PdfiumError:
        return None
    if pil.mode not in ("RGB", "RGBA", "L"):
        pil = pil.convert("RGB")
    if lossy and pil.mode != "RGBA":
        path = stem.with_suffix(".jpg")
        pil.save(path, format="JPEG", quality=92)
    else:
        path = stem.with_suffix(".png")
        pil.save(path, format="PNG")
    return path


def page_blocks(page: Any, work: Path, prefix: str) -> tuple[list[dict[str, Any]], int]:
    """The page's text and pictures as pandoc blocks, and how many pictures they hold."""
    textpage = page.get_textpage()
    page_width = page.get_width()
    found = []
    for n, obj in enumerate(page.get_objects(filter=(_IMAGE_OBJECT,))):
        left, bottom, right, top = obj.get_bounds()
        if min(right - left, top - bottom) < MIN_PICTURE_POINTS:
            continue
        saved = _save_picture(obj, work / f"{prefix}-{n}")
        if saved is not None:
            found.append((top, left, (right - left) / page_width, saved.name))
    blocks: list[dict[str, Any]] = []
    upper: float | None = None  # the band's top: the page's for the first band
    for top, _, share, name in sorted(found, key=lambda f: (-f[0], f[1])):
        if upper is None or top < upper:
            text = textpage.get_text_bounded(bottom=top, top=upper)
            blocks += paragraphs(text.splitlines())
            upper = top
        blocks.append(picture_block(name, f"{max(10, min(100, round(share * 100)))}%"))
    blocks += paragraphs(textpage.get_text_bounded(top=upper).splitlines())
    return blocks, len(found)


class PdfDocumentEngine:
    descriptor = Descriptor(
        id="pdf-document",
        conversions=frozenset(("pdf", fmt) for fmt in DOCUMENTS),
        options=PdfDocumentOptions,
        queue="light",  # PDFium's text and pixels, then pandoc: as light as the text route
        version=lambda: f"{pdfium_version()}+pandoc-{tool_version('pandoc')}",
        family="pdf",
        # Below pdfium to txt then pandoc (1 + 1), which loses the pictures; above
        # ocr-document, so a drawing (svg) still becomes a picture of it (rsvg to png, then
        # ocr-document) rather than the text of its PDF, whose paths this engine drops.
        cost=1.95,
        requires=("pandoc",),
        packages=("pandoc",),
    )

    def convert(
        self,
        src: Path,
        dst: Path,
        src_format: str,
        dst_format: str,
        options: PdfDocumentOptions,
        progress: Progress,
    ) -> None:
        work = Path(tempfile.mkdtemp(prefix="pdf-document-", dir=dst.parent))
        blocks: list[dict[str, Any]] = []
        pictures = 0
        with open_pdfium(src) as doc:
            pages = page_numbers(options.pages, len(doc))
            for n, index in enumerate(pages, start=1):
                if n > 1 and dst_format == "docx":
                    blocks.append(DOCX_PAGE_BREAK)
                made, held = page_blocks(doc[index], work, f"page{index + 1}")
                blocks += made
                pictures += held
                progress(n / (len(pages) + 1))
        if not pictures and not any(b["t"] == "Para" for b in blocks):
            raise PermanentError(
                "The PDF holds neither text nor pictures (its pages are blank or drawn with "
                "paths only)",
                code="NO_TEXT_FOUND",
            )
        write_pictured_document(blocks, dst, dst_format, work, work, src.stem)
        progress(1.0)
