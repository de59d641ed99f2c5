"""PDF -> documents that keep its pictures and drawings (docx, odt, epub, html, rtf; doc is
LibreOffice's of the docx): PDFium reads each page's text, pictures and drawings in the
helper, pandoc writes the document.

Text comes in PDFium's reading order (the page's content order: on a page of two columns,
the left one, then the right one), a paragraph per line, as the text route (pdf -> txt ->
docx) has it. Each figure goes before the first text of its columns below its top edge, as
wide (in share of the text's width) as it is of the page: the text above it, the figure, the
text below; a figure in the right column of two sits in that column's text. Two columns are
told by a gutter that parts the page's text lines (``columns``). In docx each page starts a
new page. Pictures keep their pixels (JPEG data as JPEG, everything else as PNG); images
smaller than ``MIN_PICTURE_POINTS`` on the page (rules, bullets, spacers) are left out.

A drawing (a chart, a diagram, a logo as outlines: vector paths, shadings and forms) becomes a
picture of it: the page's region rendered at ``DRAWING_DPI``, as far as the paths' clips let
them show. Paths that touch or nearly touch (``LABEL_POINTS``) are one drawing, and the text
lines mostly on it or that near its edge (a legend, a chart's axis labels) are drawn with it
and left out of the text. What is thinner than ``THIN_POINTS`` (rules, table borders,
underlines) is not a drawing, nor is a box more than ``TEXT_COVER`` of whose area text lines
cover (a shaded paragraph, a page frame): its text stays text. Columns side by side and the
page's exact layout are not kept (the columns' text follows one after the other): that would
take LibreOffice's PDF import, whose frames per line are slower by tens of seconds a page and
hard to edit. A PDF with neither text, pictures nor drawings is ``NO_TEXT_FOUND``.
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

DOCUMENTS = ("docx", "odt", "epub", "html", "rtf")
MIN_PICTURE_POINTS = 12.0  # a picture's smaller side on the page, in points (1/72 in)
# A page break in Word's XML: a paragraph whose only run breaks the page.
DOCX_PAGE_BREAK = {
    "t": "RawBlock",
    "c": ["openxml", '<w:p><w:r><w:br w:type="page"/></w:r></w:p>'],
}
_IMAGE_OBJECT = 3  # FPDF_PAGEOBJ_IMAGE
_DRAWN_OBJECTS = (2, 4, 5)  # FPDF_PAGEOBJ_PATH, _SHADING, _FORM
_KEPT_CONTROLS = frozenset(map(ord, "\t\n\r\f"))  # the controls text may hold
DRAWING_DPI = 150
LABEL_POINTS = 8.0  # text this near a drawing goes with it; shapes this near are one drawing
THIN_POINTS = 2.0  # a path thinner than this on its smaller side is a rule or a border
MIN_DRAWING_POINTS = 36.0  # a drawing's smaller side: half an inch
GUTTER_SPAN = (0.3, 0.7)  # where across the page a gutter between two columns may be
GUTTER_POINTS = 6  # the narrowest gutter
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

    @property
    def centre(self) -> tuple[float, float]:
        return (self.left + self.right) / 2, (self.bottom + self.top) / 2

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
    width = page.get_width()
    figures: list[tuple[Box, str]] = []  # where on the page, the file
    for n, obj in enumerate(page.get_objects(filter=(_IMAGE_OBJECT,))):
        box = Box(*obj.get_bounds())
        if min(box.right - box.left, box.top - box.bottom) < MIN_PICTURE_POINTS:
            continue
        saved = _save_picture(obj, work / f"{prefix}-{n}")
        if saved is not None:
            figures.append((box, saved.name))
    candidates = _drawing_candidates(page)
    if not figures and not candidates:
        return list(paragraphs(textpage.get_text_bounded().splitlines())), 0
    chars = _chars(textpage)
    lines = _line_boxes(chars)
    regions, drawn = labelled(find_drawings(candidates, lines), chars)
    for n, region in enumerate(regions):
        figures.append((region, _save_drawing(page, region, work / f"{prefix}-drawing{n}.png")))
    blocks: list[dict[str, Any]] = []
    around = text_around(chars, [box for box, _ in figures], drawn, columns(lines, width))
    for text, k in around:
        blocks += paragraphs(text.splitlines())
        if k is not None:
            box, name = figures[k]
            share = (box.right - box.left) / width
            blocks.append(picture_block(name, f"{max(10, min(100, round(share * 100)))}%"))
    return blocks, len(figures)


def columns(lines: list[Box], width: float) -> list[tuple[float, float]]:
    """The page's columns, as ranges across it: two where a gutter in its middle part (from
    ``GUTTER_SPAN``'s first share of the width to its second) at least ``GUTTER_POINTS``
    wide parts the text lines, which at most a tenth of them cross (a title over both
    columns) and with at least a quarter of them on either side; else one."""
    whole = [(0.0, width)]
    if len(lines) < 6:
        return whole
    low, high = int(width * GUTTER_SPAN[0]), int(width * GUTTER_SPAN[1])
    allowed = len(lines) // 10
    free = [sum(1 for b in lines if b.left < x < b.right) <= allowed for x in range(low, high)]
    best: tuple[int, int] = (0, 0)  # the widest run of free points: (length, its end)
    run = 0
    for n, ok in enumerate(free):
        run = run + 1 if ok else 0
        best = max(best, (run, n))
    length, end = best
    if length < GUTTER_POINTS:
        return whole
    gutter = low + end - length / 2
    left = sum(1 for b in lines if b.right <= gutter)
    right = sum(1 for b in lines if b.left >= gutter)
    if min(left, right) < len(lines) / 4:
        return whole
    return [(0.0, gutter), (gutter, width)]


def text_around(
    chars: list[Char], figures: list[Box], drawn: set[int], cols: list[tuple[float, float]]
) -> list[tuple[str, int | None]]:
    """The page's text in PDFium's reading order, each figure (by number) after the piece of
    text before it: a figure goes before the first character of its columns (those it spans)
    below its top edge, so a figure in one column of two sits in that column's text; figures
    at one place come top to bottom, then left to right. Characters numbered in ``drawn``
    are left out (drawn with a drawing), and the spaces and line ends after one with them."""

    def column(x: float) -> int:
        return next((n for n, (a, b) in enumerate(cols) if a <= x < b), len(cols) - 1)

    kept: list[str] = []
    at: list[tuple[float, int] | None] = []  # per character: its centre's height and column
    keep = True
    for n, char in enumerate(chars):
        if char.box is not None:
            keep = n not in drawn
            x, y = char.box.centre
            at.append((y, column(x)) if keep else None)
        else:
            at.append(None)
        kept.append(char.text if keep else "")
    places = {}
    for k, fig in enumerate(figures):
        spans = {n for n, (a, b) in enumerate(cols) if min(fig.right, b) > max(fig.left, a)}
        places[k] = next(
            (n for n, p in enumerate(at) if p and p[0] < fig.top and p[1] in spans), len(chars)
        )
    order = sorted(places, key=lambda k: (places[k], -figures[k].top, figures[k].left))
    pieces: list[tuple[str, int | None]] = []
    start = 0
    ends: list[tuple[int, int | None]] = [(places[k], k) for k in order]
    for end, figure in [*ends, (len(chars), None)]:
        # PDFium gives a character beyond the BMP as its two UTF-16 halves: paired up here
        text = "".join(kept[start:end]).encode("utf-16-le", "surrogatepass")
        pieces.append((text.decode("utf-16-le", "replace"), figure))
        start = end
    return pieces


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
        code = pdfium_c.FPDFText_GetUnicode(textpage, i)
        if (code < 0x20 and code not in _KEPT_CONTROLS) or code in (0xFFFE, 0xFFFF):
            continue  # no character of a document (XML refuses them): a font's unmapped glyph
        text = chr(code)
        made = pdfium_c.FPDFText_IsGenerated(textpage, i) == 1
        chars.append(Char(text, None if made else Box(*textpage.get_charbox(i))))
    return chars


def find_drawings(candidates: list[Box], lines: list[Box]) -> list[Box]:
    """The drawings among the candidate boxes: those that are not text on a background (the
    page's text ``lines``), joined where they touch (within ``LABEL_POINTS``), each at least
    ``MIN_DRAWING_POINTS`` on its smaller side and itself not mostly text."""
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


def labelled(drawings: list[Box], chars: list[Char]) -> tuple[list[Box], set[int]]:
    """Each drawing's region, grown over the text lines that lie mostly within
    ``LABEL_POINTS`` of it (its labels, legend and axis figures, drawn with it) and a point of
    margin; and those lines' characters, by number. A line is PDFium's: the characters between
    two line ends."""
    if not drawings:
        return [], set()
    regions = list(drawings)
    near = [d.grown(LABEL_POINTS) for d in drawings]
    drawn: set[int] = set()
    for line in _lines(chars):
        votes = [0] * len(drawings)
        for n in line:
            box = chars[n].box
            assert box is not None
            for d, area in enumerate(near):
                if area.holds(*box.centre):
                    votes[d] += 1
                    break
        best = max(range(len(drawings)), key=votes.__getitem__)
        if 2 * votes[best] > len(line):
            drawn.update(line)
            for box in (chars[n].box for n in line):
                if box is not None:
                    regions[best] = regions[best].joined(box)
    return [r.grown(1.0) for r in regions], drawn


def _line_boxes(chars: list[Char]) -> list[Box]:
    """Each line's box: round its characters."""
    return [
        functools.reduce(Box.joined, (b for n in line if (b := chars[n].box) is not None))
        for line in _lines(chars)
    ]


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
        # ocr-document, so a drawing (svg) becomes a picture of it whole (rsvg to png, then
        # ocr-document) rather than what this engine tells apart in its PDF (no drawing under
        # half an inch). rtf likewise above ocr-document's 2.2.
        cost=1.95,
        pair_costs={("pdf", "rtf"): 2.25},
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
