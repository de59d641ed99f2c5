"""Text from raster images with Tesseract OCR (``tesseract``, Apache-2.0), run as a program.

png, jpg, tiff (every page), bmp, webp and gif (first frame) -> txt; pages are separated by a
form feed, as PDFium's pdf -> txt separates them. Other images reach it through libvips
(avif -> png -> txt), and text formats go on from txt (png -> txt -> md).

The same pictures -> docx, odt, epub, html and rtf are documents that hold each picture, then the
text read in it (``ocr-document``: Tesseract, then pandoc), so a picture without words still
makes a document. To txt, an image without text is a task error (``NO_TEXT_FOUND``), not an
empty file. ``language``
takes Tesseract's names, several joined by ``+`` (``eng+deu``); each must be installed here
(Debian's ``tesseract-ocr-LANG`` packages).

Tesseract reads a file that is not an image as a list of image paths, and names starting with
``http`` as URLs: the worker has checked the input's magic bytes first, it is always a path
under /job, and the sandbox has neither the host's files nor a network.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Annotated, Any

import msgspec

from appliance.engines import Descriptor, Progress
from appliance.engines.markup import paragraphs, picture_block, write_pictured_document
from appliance.engines.pixels import check_pixels, pillow_size
from appliance.engines.tools import run_tool, tool_version
from appliance.errors import PermanentError

INPUTS = ("png", "jpg", "tiff", "bmp", "webp", "gif")
DEFAULT_LANGUAGE = "eng"
# Tesseract's names ("eng", "chi_sim", "script/Latin"), several joined by "+"
LANGUAGES = r"^[A-Za-z_]+(/[A-Za-z_]+)?(\+[A-Za-z_]+(/[A-Za-z_]+)?)*$"
# One OCR run uses one core: several conversions run side by side on a worker instead.
ENV = {"OMP_THREAD_LIMIT": "1"}


@functools.cache
def installed_languages() -> frozenset[str] | None:
    """Languages Tesseract has data for on this host (``osd``, orientation detection, is not
    one), or None where Tesseract is not installed (an API host)."""
    if shutil.which("tesseract") is None:
        return None
    done = subprocess.run(
        ["tesseract", "--list-langs"], capture_output=True, text=True, check=False
    )
    names = {line.strip() for line in done.stdout.splitlines()[1:]}  # after "List of ..."
    return frozenset(names - {"", "osd"})


class OcrOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    language: Annotated[str, msgspec.Meta(pattern=LANGUAGES, max_length=200)] = DEFAULT_LANGUAGE

    def __post_init__(self) -> None:
        # Checked where Tesseract is installed: by the API when it is installed there too (a
        # 422 whose message names the language and the installed ones), and in any case
        # inside the engine helper before it runs (INVALID_OPTIONS).
        installed = installed_languages()
        if installed is None:
            return
        for name in self.language.split("+"):
            if name not in installed:
                allowed = ", ".join(sorted(installed)) or "none"
                raise ValueError(f"language {name!r} is not installed; installed: {allowed}")


def _version() -> str:
    languages = installed_languages() or frozenset()
    return f"{tool_version('tesseract')} ({'+'.join(sorted(languages)) or 'no languages'})"


class OcrEngine:
    descriptor = Descriptor(
        id="tesseract",
        conversions=frozenset((fmt, "txt") for fmt in INPUTS),
        options=OcrOptions,
        # Seconds per page (an A4 page at 300 dpi: ~3 s on one core), like calibre: not
        # light work.
        queue="office",
        version=_version,
        family="ocr",
        # Below image -> pdf -> txt (1 + 1), which finds no text in a picture, so images
        # reach txt, and the text formats after it, through OCR.
        cost=1.5,
        requires=("tesseract",),
        packages=("tesseract-ocr", "tesseract-ocr-eng"),
    )

    def convert(
        self,
        src: Path,
        dst: Path,
        src_format: str,
        dst_format: str,
        options: OcrOptions,
        progress: Progress,
    ) -> None:
        size = pillow_size(src)
        if size is not None:
            check_pixels(*size)
        work = Path(tempfile.mkdtemp(prefix="ocr-", dir=dst.parent))
        if src_format == "webp":
            # Tesseract's own WebP reader (leptonica's) returns no picture for some sound
            # files (libvips' test image big-height.webp): Pillow decodes it
            src = _pictures(src, src_format, work)[0]
        try:
            text = _read_text(src, options.language)
        except PermanentError as exc:
            if src_format != "tiff" or exc.code != "INVALID_INPUT_FILE":
                raise
            # leptonica decodes not every TIFF coding (old-style JPEG, a scanner's): Pillow's
            # pages, each read on its own (Tesseract ends each page's text with a form feed)
            text = "".join(
                _read_text(page, options.language) for page in _pictures(src, "tiff", work)
            )
        if not text.strip():
            raise PermanentError("No text was found in the image", code="NO_TEXT_FOUND")
        dst.write_text(text, encoding="utf-8")
        progress(1.0)


def _read_text(src: Path, language: str) -> str:
    """Tesseract's text of every page of ``src`` (empty: no words); INVALID_INPUT_FILE for a
    page it could not decode. Tesseract exits 0 with no text in both cases; only its stderr
    tells them apart."""
    # "-" writes the text to stdout; the page count and warnings go to stderr.
    done = run_tool(["tesseract", str(src), "-", "-l", language], what="OCR", env=ENV)
    text = done.stdout.decode("utf-8", "replace")
    if not text.strip():
        stderr = done.stderr.decode("utf-8", "replace")
        errors = [line.strip() for line in stderr.splitlines() if line.startswith("Error")]
        if errors:
            raise PermanentError(
                f"The image could not be read: {errors[0]}", code="INVALID_INPUT_FILE"
            )
    return text


# -- pictures -> documents that hold them -------------------------------------------------------
# formats that hold pictures (RTF as hex inside the file)
DOCUMENTS = ("docx", "odt", "epub", "html", "rtf")
KEPT_AS_THEY_ARE = ("png", "jpg")  # every document format and reader takes them


def _pictures(src: Path, src_format: str, work: Path) -> list[Path]:
    """The picture's pages as files every document format takes: png and jpg as they are;
    every page of a TIFF, the first frame of a GIF, a BMP or WebP as PNG (decoded by
    Pillow)."""
    from PIL import Image, ImageSequence, UnidentifiedImageError

    if src_format in KEPT_AS_THEY_ARE:
        return [src]
    pages = []
    try:
        with Image.open(src) as image:
            frames = ImageSequence.Iterator(image) if src_format == "tiff" else [image]
            for i, frame in enumerate(frames):
                check_pixels(*frame.size, what=f"Page {i + 1} of the image")
                page = work / f"page-{i + 1}.png"
                frame.save(page, format="PNG")
                pages.append(page)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, EOFError) as exc:
        raise PermanentError(
            f"The image could not be read: {exc}", code="INVALID_INPUT_FILE"
        ) from exc
    return pages


class PictureDocumentEngine:
    """A document of each page of the picture followed by the text Tesseract reads in it
    (none for a picture without words), written by pandoc: docx, odt and epub hold the
    pictures in their container, html as ``data:`` URLs (one self-contained file), rtf as
    hex."""

    descriptor = Descriptor(
        id="ocr-document",
        conversions=frozenset((fmt, dst) for fmt in INPUTS for dst in DOCUMENTS),
        options=OcrOptions,
        queue="office",  # OCR's seconds per page, as for the tesseract engine
        version=lambda: f"{_version()}+pandoc-{tool_version('pandoc')}",
        family="ocr",
        # Below OCR to txt then pandoc (1.5 + 1), which loses the picture, and svg's route
        # through its PDF's text (rsvg + pdfium + pandoc, 3): a drawing becomes a document
        # holding it (rsvg to png, then this). Text formats (md, rst, ...), which cannot hold
        # a picture, keep their routes: through this one's html they would cost more. rtf
        # costs more, so a PDF keeps its text route to rtf (pdfium + libreoffice, 3) rather
        # than becoming pictures of its pages (pdfium to jpg, then this).
        cost=1.9,
        pair_costs={(fmt, "rtf"): 2.2 for fmt in INPUTS},
        requires=("tesseract", "pandoc"),
        packages=("tesseract-ocr", "tesseract-ocr-eng", "pandoc"),
    )

    def convert(
        self,
        src: Path,
        dst: Path,
        src_format: str,
        dst_format: str,
        options: OcrOptions,
        progress: Progress,
    ) -> None:
        size = pillow_size(src)
        if size is not None:
            check_pixels(*size)
        work = Path(tempfile.mkdtemp(prefix="ocr-document-", dir=dst.parent))
        pages = _pictures(src, src_format, work)
        blocks: list[dict[str, Any]] = []
        for i, page in enumerate(pages):
            blocks.append(picture_block(page.name))
            blocks += paragraphs(_read_text(page, options.language).splitlines())
            progress((i + 1) / (len(pages) + 1))
        write_pictured_document(blocks, dst, dst_format, work, pages[0].parent, src.stem)
        progress(1.0)


# -- pdf/ocr: a searchable PDF ------------------------------------------------------------------
Language = Annotated[str, msgspec.Meta(pattern=LANGUAGES, max_length=200)]


class PdfOcrOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # Tesseract's names: one ("eng"), several joined by "+" ("eng+deu"), or a list of them
    # (["eng", "deu"], as CloudConvert's clients send it)
    language: Language | list[Language] = DEFAULT_LANGUAGE
    auto_orient: bool = False  # turn pages whose text runs sideways or upside down upright

    def __post_init__(self) -> None:
        if isinstance(self.language, list) and not self.language:
            raise ValueError("language must name at least one language")
        OcrOptions(language=self.languages())  # checks each is installed, where Tesseract is

    def languages(self) -> str:
        """Tesseract's ``-l`` value."""
        return self.language if isinstance(self.language, str) else "+".join(self.language)


def _ocrmypdf_version() -> str:
    return f"ocrmypdf-{tool_version('ocrmypdf')}+{_version()}"


class PdfOcrEngine:
    """A PDF with an invisible text layer over its scanned pages (the ``pdf/ocr`` operation),
    by OCRmyPDF (MPL-2.0, run as a program) driving Tesseract. Pages that already carry text
    are kept as they are; the page images are not re-encoded."""

    descriptor = Descriptor(
        id="ocrmypdf",
        conversions=frozenset(),
        options=PdfOcrOptions,
        queue="office",  # seconds per page, as the image OCR
        version=_ocrmypdf_version,
        family="ocr",
        requires=("ocrmypdf", "tesseract"),
        packages=("ocrmypdf", "tesseract-ocr", "tesseract-ocr-eng", "tesseract-ocr-osd"),
    )

    def convert(
        self,
        src: Path,
        dst: Path,
        src_format: str,
        dst_format: str,
        options: PdfOcrOptions,
        progress: Progress,
    ) -> None:
        from appliance.engines.pdftools import open_unlocked

        with open_unlocked(src):  # damaged or locked inputs fail here with a clear message
            pass
        argv = ["ocrmypdf", "--jobs", "1", "--skip-text", "--output-type", "pdf", "--quiet"]
        argv += ["--optimize", "0", "-l", options.languages()]
        # OCRmyPDF's threshold (14) turns only pages full of text; half a page (~7 confidence
        # per 10 lines, measured) is a surer sign than that of a page scanned the wrong way
        argv += ["--rotate-pages", "--rotate-pages-threshold", "7"] if options.auto_orient else []
        run_tool([*argv, str(src), str(dst)], what="OCR", env=ENV)
        progress(1.0)
