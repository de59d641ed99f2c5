"""PDF pages to images and text with PDFium (pypdfium2, permissive licence), in the helper.

pdf -> png / jpg gives one file per selected page (a single page gives a single file);
pdf -> txt gives the text of the selected pages, pages separated by a form feed; a PDF with
no text at all (scanned pages without a text layer) is ``NO_TEXT_FOUND``, not an empty file.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Annotated, Any

import msgspec

from appliance.engines import Descriptor, Progress
from appliance.engines.pixels import check_pixels
from appliance.errors import PermanentError

# PDFium is not thread-safe. A sandboxed helper has one thread; APPLIANCE_SANDBOX=off does not.
_LOCK = threading.Lock()


# Pages as clients write them: "1-3,5" (1-based; page_numbers reads it)
PagesSpec = Annotated[str, msgspec.Meta(pattern=r"^\d+(-\d+)?(,\d+(-\d+)?)*$")]


class PdfOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pages: PagesSpec | None = None
    pixel_density: Annotated[int, msgspec.Meta(ge=10, le=1200)] = 150  # dpi
    quality: Annotated[int, msgspec.Meta(ge=1, le=100)] = 85  # jpg only


@cache
def _pdfium() -> Any:
    import pypdfium2

    return pypdfium2


@contextmanager
def open_pdfium(src: Path) -> Iterator[Any]:
    """The PDF at ``src``, opened under PDFium's lock and closed after; one PDFium cannot open
    is the input's fault (``INVALID_INPUT_FILE``)."""
    pdfium = _pdfium()
    with _LOCK:
        try:
            doc = pdfium.PdfDocument(str(src))
        except pdfium.PdfiumError as exc:
            raise PermanentError(
                f"The PDF could not be opened: {exc}", code="INVALID_INPUT_FILE"
            ) from exc
        try:
            yield doc
        finally:
            doc.close()


def pdfium_version() -> str:
    import pypdfium2.version as v

    return f"pypdfium2-{v.PYPDFIUM_INFO}+pdfium-{v.PDFIUM_INFO.build}"


def page_numbers(spec: str | None, count: int) -> list[int]:
    """0-based page indexes for a spec like "1-3,5" (1-based, as clients write them)."""
    if not spec:
        return list(range(count))
    pages: list[int] = []
    for part in spec.split(","):
        first, _, last = part.partition("-")
        a, b = int(first), int(last or first)
        if a < 1 or b < a or b > count:
            raise PermanentError(
                f"pages {part!r} is outside the document's 1-{count}", code="INVALID_OPTIONS"
            )
        pages += [n for n in range(a - 1, b) if n not in pages]
    return pages


class PdfEngine:
    descriptor = Descriptor(
        id="pdfium",
        conversions=frozenset({("pdf", "png"), ("pdf", "jpg"), ("pdf", "txt")}),
        options=PdfOptions,
        queue="light",
        version=pdfium_version,
        family="pdf",
    )

    def convert(
        self,
        src: Path,
        dst: Path,
        src_format: str,
        dst_format: str,
        options: PdfOptions,
        progress: Progress,
    ) -> list[Path] | None:
        with open_pdfium(src) as doc:
            pages = page_numbers(options.pages, len(doc))
            if dst_format == "txt":
                texts = []
                for n, index in enumerate(pages, start=1):
                    texts.append(doc[index].get_textpage().get_text_bounded())
                    progress(n / len(pages))
                if not any(text.strip() for text in texts):
                    # as the OCR engine reports a picture without words
                    raise PermanentError(
                        "No text was found in the PDF: it has no text layer (scanned pages "
                        "are pictures; png -> txt reads them with OCR)",
                        code="NO_TEXT_FOUND",
                    )
                dst.write_text("\f".join(texts), encoding="utf-8")
                return None
            outputs = (
                [dst]
                if len(pages) == 1
                else [dst.with_name(f"{dst.stem}-page{index + 1}{dst.suffix}") for index in pages]
            )
            for n, (index, out) in enumerate(zip(pages, outputs, strict=True), start=1):
                self._render(doc[index], out, dst_format, options)
                progress(n / len(pages))
            return None if len(pages) == 1 else outputs

    def _render(self, page: Any, out: Path, fmt: str, options: PdfOptions) -> None:
        scale = options.pixel_density / 72
        width, height = page.get_size()
        check_pixels(width * scale, height * scale, f"A page at {options.pixel_density} dpi")
        image = page.render(scale=scale).to_pil()
        if fmt == "jpg":
            image.convert("RGB").save(out, format="JPEG", quality=options.quality)
        else:
            image.save(out, format="PNG")
