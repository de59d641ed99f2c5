"""PDF -> documents that keep its pictures and drawings (docx, odt, epub, html): PDFium reads
each page's text, pictures and drawings in the helper, pandoc writes the document.

Each page's figures are placed among its text by height: the text above a figure's top edge,
the figure (as wide, in share of the text's width, as it is of the page), then the text below,
and so on down the page; text comes in PDFium's reading order, a paragraph per line, as the
text route (pdf -> txt -> docx) has it. In docx each page starts a new page. Pictures keep
their pixels (JPEG data as JPEG, everything else as PNG); images smaller than
``MIN_PICTURE_POINTS`` on the page (rules, bullets, spacers) are left out.

A drawing (a chart, a diagram, a logo as outlines: vector paths, shadings and forms) becomes a
picture of it: the page's region rendered at ``DRAWING_DPI``, as far as the paths' clips let
them show. Paths that touch or nearly touch (``LABEL_POINTS``) are one drawing, and the text
lines mostly on it or that near its edge (a legend, a chart's axis labels) are drawn with it
and left out of the text. What is thinner than ``THIN_POINTS`` (rules, table borders,
underlines) is not a drawing, nor is a box more than ``TEXT_COVER`` of whose area text lines
cover (a shaded paragraph, a page frame): its text stays text. Columns and the
page's exact layout are not kept: that would take LibreOffice's PDF import, whose frames per
line are slower by tens of seconds a page and hard to edit. A PDF with neither text, pictures
nor drawings is ``NO_TEXT_FOUND``.
"""

from __future__ import annotations

import ctypes
import functools
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
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
_DRAWN_OBJECTS = (2, 4, 5)  # FPDF_PAGEOBJ_PATH, _SHADING, _FORM
DRAWING_DPI = 150
LABEL_POINTS = 8.0  # text this near a drawing goes with it; shapes this near are one drawing
THIN_POINTS = 2.0  # a path thinner than this on its smaller side is a rule or a border
MIN_DRAWING_POINTS = 36.0  # a drawing's smaller side: half an inch
TEXT_COVER = 0.15  # a box more covered by text lines than this is text on a background


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


@dataclass(frozen=True)
class Box:
    """A region of the page in points, PDF's way up (bottom < top)."""

    left: float
    bottom: float
    right: float
    top: float

    def grown(self, by: float) -> Box:
        return Box(self.left - by, self.bottom - by, self.right + by, self.top + by)

    def holds(self, x: float, y: float) -> bool:
        return self.left <= x <= self.right and self.bottom <= y <= self.top

    def meets(self, other: Box) -> bool:
        return (
            self.left <= other.right
            and other.left <= self.right
            and self.bottom <= other.top
            and other.bottom <= self.top
        )

    def joined(self, other: Box) -> Box:
        return Box(
            min(self.left, other.left),
            min(self.bottom, other.bottom),
            max(self.right, other.right),
            max(self.top, other.top),
        )

    @property
    def area(self) -> float:
        return max(self.right - self.left, 0.0) * max(self.top - self.bottom, 0.0)


@dataclass(frozen=True)
class Char:
    text: str
    box: Box | None  # None: a space or line end PDFium made, which has no place of its own


def page_blocks(page: Any, work: Path, prefix: str) -> tuple[list[dict[str, Any]], int]:
    """The page's text, pictures and drawings as pandoc blocks, and how many figures (pictures
    and drawings) they hold."""
    textpage = page.get_textpage()
    page_width = page.get_width()
    found = []  # (top, left, share of the page's width, file name)
    for n, obj in enumerate(page.get_objects(filter=(_IMAGE_OBJECT,))):
        left, bottom, right, top = obj.get_bounds()
        if min(right - left, top - bottom) < MIN_PICTURE_POINTS:
            continue
        saved = _save_picture(obj, work / f"{prefix}-{n}")
        if saved is not None:
            found.append((top, left, (right - left) / page_width, saved.name))
    chars: list[Char] = []
    drawings: list[Box] = []
    candidates = _drawing_candidates(page)
    if candidates:
        chars = _chars(textpage)
        drawings = find_drawings(candidates, chars)
    regions, drawn = labelled(drawings, chars) if drawings else ([], set())
    for n, region in enumerate(regions):
        name = _save_drawing(page, region, work / f"{prefix}-drawing{n}.png")
        found.append((region.top, region.left, (region.right - region.left) / page_width, name))
    found.sort(key=lambda f: (-f[0], f[1]))
    tops = [f[0] for f in found]
    if drawings:
        texts = text_between(chars, tops, drawn)
    else:
        texts, upper = [], None  # the first band's top is the page's
        for top in tops:
            texts.append(textpage.get_text_bounded(bottom=top, top=upper))
            upper = top
        texts.append(textpage.get_text_bounded(top=upper))
    blocks: list[dict[str, Any]] = []
    for text, (_, _, share, name) in zip(texts, found, strict=False):
        blocks += paragraphs(text.splitlines())
        blocks.append(picture_block(name, f"{max(10, min(100, round(share * 100)))}%"))
    blocks += paragraphs(texts[-1].splitlines())
    return blocks, len(found)


def _drawing_candidates(page: Any) -> list[Box]:
    """The page's paths, shadings and forms that are not thin marks, as the boxes they show
    on the page: within the page and their clip paths (a plot's curves run on past its axes,
    clipped)."""
    width, height = page.get_size()
    boxes = []
    for obj in page.get_objects(filter=_DRAWN_OBJECTS, max_depth=0):
        box = _within(Box(*obj.get_bounds()), Box(0.0, 0.0, width, height))
        for clip in _clip_boxes(obj):
            box = _within(box, clip)
        if min(box.right - box.left, box.top - box.bottom) >= THIN_POINTS:
            boxes.append(box)
    return boxes


def _within(box: Box, bounds: Box) -> Box:
    return Box(
        max(box.left, bounds.left),
        max(box.bottom, bounds.bottom),
        min(box.right, bounds.right),
        min(box.top, bounds.top),
    )


def _clip_boxes(obj: Any) -> Iterator[Box]:
    """The boxes of the object's clip paths, in page space."""
    import pypdfium2.raw as pdfium_c

    clip = pdfium_c.FPDFPageObj_GetClipPath(obj)
    if not clip:
        return
    x, y = ctypes.c_float(), ctypes.c_float()
    for n in range(max(pdfium_c.FPDFClipPath_CountPaths(clip), 0)):
        xs, ys = [], []
        for i in range(max(pdfium_c.FPDFClipPath_CountPathSegments(clip, n), 0)):
            segment = pdfium_c.FPDFClipPath_GetPathSegment(clip, n, i)
            if segment and pdfium_c.FPDFPathSegment_GetPoint(segment, x, y):
                xs.append(x.value)
                ys.append(y.value)
        if xs:
            yield Box(min(xs), min(ys), max(xs), max(ys))


def _chars(textpage: Any) -> list[Char]:
    """Every character of the page in PDFium's reading order, with its box."""
    import pypdfium2.raw as pdfium_c

    chars = []
    for i in range(textpage.count_chars()):
        text = chr(pdfium_c.FPDFText_GetUnicode(textpage, i))
        made = pdfium_c.FPDFText_IsGenerated(textpage, i) == 1
        chars.append(Char(text, None if made else Box(*textpage.get_charbox(i))))
    return chars


def find_drawings(candidates: list[Box], chars: list[Char]) -> list[Box]:
    """The drawings among the candidate boxes: those that are not text on a background,
    joined where they touch (within ``LABEL_POINTS``), each at least ``MIN_DRAWING_POINTS``
    on its smaller side and itself not mostly text."""
    lines = [
        functools.reduce(Box.joined, (b for n in line if (b := chars[n].box) is not None))
        for line in _lines(chars)
    ]
    shapes = [b for b in candidates if text_cover(b, lines) <= TEXT_COVER]
    return [
        d
        for d in _join_touching(shapes)
        if min(d.right - d.left, d.top - d.bottom) >= MIN_DRAWING_POINTS
        and text_cover(d, lines) <= TEXT_COVER
    ]


def _join_touching(shapes: list[Box]) -> list[Box]:
    """Boxes that meet (within ``LABEL_POINTS``) merged, until no two meet."""
    while True:
        joined = _join_once(shapes)
        if len(joined) == len(shapes):
            return joined
        shapes = joined


def _join_once(shapes: list[Box]) -> list[Box]:
    """The boxes of the groups of shapes that meet, directly or through others: a sweep from
    left to right that compares each shape only with those not yet behind it."""
    parent = list(range(len(shapes)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    active: list[int] = []
    for i in sorted(range(len(shapes)), key=lambda i: shapes[i].left):
        near = shapes[i].grown(LABEL_POINTS)
        active = [j for j in active if shapes[j].right >= near.left]
        for j in active:
            if near.meets(shapes[j]):
                parent[root(j)] = root(i)
        active.append(i)
    groups: dict[int, Box] = {}
    for i, box in enumerate(shapes):
        r = root(i)
        groups[r] = groups[r].joined(box) if r in groups else box
    return list(groups.values())


def text_cover(box: Box, lines: list[Box]) -> float:
    """The share of the box's area that the text lines (each the box round its characters)
    cover."""
    if box.area <= 0:
        return 0.0
    return sum(_within(line, box).area for line in lines) / box.area


def text_between(chars: list[Char], tops: list[float], drawn: set[int]) -> list[str]:
    """The page's text cut at the figures' tops (``tops``, highest first): the text above the
    first, between each and the next, and below the last; the characters numbered in
    ``drawn`` are left out (drawn with a drawing), and the spaces and line ends after one with
    them."""
    texts: list[list[str]] = [[] for _ in range(len(tops) + 1)]
    band: int | None = 0  # where the last placed character went; None: left out
    for n, char in enumerate(chars):
        if char.box is not None:
            y = (char.box.bottom + char.box.top) / 2
            band = None if n in drawn else sum(1 for top in tops if top > y)
        if band is not None:
            texts[band].append(char.text)
    # PDFium gives a character beyond the BMP as its two UTF-16 halves: paired up again here
    return [
        "".join(t).encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
        for t in texts
    ]


def labelled(drawings: list[Box], chars: list[Char]) -> tuple[list[Box], set[int]]:
    """Each drawing's region, grown over the text lines that lie mostly within
    ``LABEL_POINTS`` of it (its labels, legend and axis figures, drawn with it) and a point of
    margin; and those lines' characters, by number. A line is PDFium's: the characters between
    two line ends."""
    regions = list(drawings)
    near = [d.grown(LABEL_POINTS) for d in drawings]
    drawn: set[int] = set()
    for line in _lines(chars):
        votes = [0] * len(drawings)
        for n in line:
            box = chars[n].box
            assert box is not None
            x, y = (box.left + box.right) / 2, (box.bottom + box.top) / 2
            for d, area in enumerate(near):
                if area.holds(x, y):
                    votes[d] += 1
                    break
        best = max(range(len(drawings)), key=votes.__getitem__)
        if 2 * votes[best] > len(line):
            drawn.update(line)
            for box in (chars[n].box for n in line):
                if box is not None:
                    regions[best] = regions[best].joined(box)
    return [r.grown(1.0) for r in regions], drawn


def _lines(chars: list[Char]) -> Iterator[list[int]]:
    """The numbers of each line's placed characters."""
    line: list[int] = []
    for n, char in enumerate(chars):
        if char.text in ("\r", "\n"):
            if line:
                yield line
            line = []
        elif char.box is not None:
            line.append(n)
    if line:
        yield line


def _save_drawing(page: Any, region: Box, path: Path) -> str:
    """The page's ``region`` (within the page) as a PNG."""
    width, height = page.get_size()
    left, bottom = max(region.left, 0.0), max(region.bottom, 0.0)
    right, top = min(region.right, width), min(region.top, height)
    scale = DRAWING_DPI / 72
    check_pixels((right - left) * scale, (top - bottom) * scale, what="A drawing in the PDF")
    image = page.render(scale=scale, crop=(left, bottom, width - right, height - top))
    image.to_pil().save(path, format="PNG")
    return path.name


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
                "The PDF holds neither text, pictures nor drawings (its pages are blank)",
                code="NO_TEXT_FOUND",
            )
        write_pictured_document(blocks, dst, dst_format, work, work, src.stem)
        progress(1.0)
