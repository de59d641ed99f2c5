"""The PDF family beyond page rendering, in the sandboxed helper: images -> pdf, pdf -> pdf
(select pages, PDF/A), split, merge and optimize.

pikepdf (qpdf, MPL-2.0) builds, splits and merges documents; Pillow decodes images. Ghostscript
(a separate program, AGPL, never imported) rewrites documents for the lossy optimize profiles
and for PDF/A. The merge, split and optimize engines serve task operations of the same names,
not format pairs: the registry finds them by id (``Registry.engine``).
"""

from __future__ import annotations

import shutil
import warnings
import zlib
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any, Literal

import msgspec

from appliance.engines import Descriptor, Progress
from appliance.engines.images import vips_module
from appliance.engines.pdf import PagesSpec, page_numbers
from appliance.engines.pixels import MAX_PIXELS, check_pixels, pillow_size
from appliance.engines.tools import run_tool, tool_version
from appliance.errors import PermanentError

IMAGE_INPUTS = ("png", "jpg", "webp", "tiff", "gif", "bmp")
DEFAULT_DPI = 96.0  # images without a resolution: a 96 px wide image is one inch wide
MAX_PAGE_POINTS = 14_400.0  # PDF's largest page side (200 in); bigger images are scaled down
ENGINE_REVISION = "1"  # bump when output for the same input and options changes


@cache
def _pikepdf() -> Any:
    import pikepdf

    return pikepdf


@cache
def _pillow() -> Any:
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # beyond it Pillow raises instead of decoding
    return Image


def _version() -> str:
    pikepdf = _pikepdf()
    return f"pikepdf-{pikepdf.__version__}+qpdf-{pikepdf.__libqpdf_version__}+{ENGINE_REVISION}"


def _gs_version() -> str:
    return f"{_version()}+gs-{tool_version('gs')}"


def open_pdf(src: Path) -> Any:
    """The document, or INVALID_INPUT_FILE when qpdf cannot read it (repairs are allowed)."""
    pikepdf = _pikepdf()
    try:
        return pikepdf.open(src)
    except (pikepdf.PdfError, pikepdf.PasswordError, ValueError) as exc:
        raise PermanentError(
            f"The PDF could not be opened: {exc}", code="INVALID_INPUT_FILE"
        ) from exc


def open_unlocked(src: Path) -> Any:
    """``open_pdf``'s document, or INVALID_INPUT_FILE asking to decrypt it first when it is
    encrypted (an owner password alone lets it open: the PDF tasks would drop its lock)."""
    pdf = open_pdf(src)
    if pdf.is_encrypted:
        pdf.close()
        raise PermanentError(
            "The PDF is encrypted; decrypt it first (pdf/decrypt)", code="INVALID_INPUT_FILE"
        )
    return pdf


def _save(pdf: Any, dst: Path, *, linearize: bool = False) -> None:
    pikepdf = _pikepdf()
    pdf.remove_unreferenced_resources()
    pdf.save(
        dst,
        compress_streams=True,
        object_stream_mode=pikepdf.ObjectStreamMode.generate,
        linearize=linearize,
    )


# -- images -> pdf ------------------------------------------------------------------------------
class ImagePdfOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


def _frames(image: Any, fmt: str) -> Iterator[Any]:
    """Each page of a multi-page TIFF; one frame of anything else (an animated GIF is one page)."""
    if fmt != "tiff":
        yield image
        return
    for n in range(getattr(image, "n_frames", 1)):
        image.seek(n)
        yield image


def image_xobject(pdf: Any, image: Any, raw: bytes | None) -> Any:
    """An image XObject: JPEG bytes kept as they are (no re-encoding), other pixels deflated."""
    pikepdf = _pikepdf()
    Name = pikepdf.Name
    if raw is not None:  # a grey or RGB JPEG goes in untouched
        space = Name.DeviceGray if image.mode == "L" else Name.DeviceRGB
        return pikepdf.Stream(
            pdf,
            raw,
            Type=Name.XObject,
            Subtype=Name.Image,
            Width=image.width,
            Height=image.height,
            ColorSpace=space,
            BitsPerComponent=8,
            Filter=Name.DCTDecode,
        )
    alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    grey = image.mode in ("1", "L", "LA")
    base = image.convert(("LA" if alpha else "L") if grey else ("RGBA" if alpha else "RGB"))
    pixels = base.convert("L" if grey else "RGB")

    def stream(data: bytes, space: Any) -> Any:
        return pikepdf.Stream(
            pdf,
            zlib.compress(data, 6),
            Type=Name.XObject,
            Subtype=Name.Image,
            Width=image.width,
            Height=image.height,
            ColorSpace=space,
            BitsPerComponent=8,
            Filter=Name.FlateDecode,
        )

    xobject = stream(pixels.tobytes(), Name.DeviceGray if grey else Name.DeviceRGB)
    if alpha:
        xobject.SMask = stream(base.getchannel("A").tobytes(), Name.DeviceGray)
    return xobject


def _page_size(image: Any) -> tuple[float, float]:
    dpi = image.info.get("dpi") or (DEFAULT_DPI, DEFAULT_DPI)
    x_dpi, y_dpi = (float(d) if d and float(d) > 1 else DEFAULT_DPI for d in dpi[:2])
    width, height = image.width * 72 / x_dpi, image.height * 72 / y_dpi
    shrink = min(1.0, MAX_PAGE_POINTS / max(width, height))
    return width * shrink, height * shrink


def _add_image_page(pdf: Any, image: Any, raw: bytes | None) -> None:
    pikepdf = _pikepdf()
    width, height = _page_size(image)
    page = pdf.add_blank_page(page_size=(width, height))
    page.obj.Resources = pikepdf.Dictionary(
        XObject=pikepdf.Dictionary(Im0=image_xobject(pdf, image, raw))
    )
    page.obj.Contents = pikepdf.Stream(
        pdf, f"q {width:.4f} 0 0 {height:.4f} 0 0 cm /Im0 Do Q".encode()
    )


class ImagesToPdfEngine:
    """png, jpg, webp, tiff (every page), gif and bmp to a PDF: one page per image, sized from the
    image's resolution, pixels kept losslessly (JPEG data embedded as it is)."""

    descriptor = Descriptor(
        id="image-pdf",
        conversions=frozenset((fmt, "pdf") for fmt in IMAGE_INPUTS),
        options=ImagePdfOptions,
        queue="light",
        version=_version,
        family="pdf",
    )

    def convert(
        self,
        src: Path,
        dst: Path,
        src_format: str,
        dst_format: str,
        options: ImagePdfOptions,
        progress: Progress,
    ) -> None:
        Image = _pillow()
        pikepdf = _pikepdf()
        pdf = pikepdf.new()
        size = pillow_size(src)
        if size is not None:
            check_pixels(*size)  # the words every image route uses
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(src) as image:
                    raw = None
                    if src_format == "jpg" and image.mode in ("L", "RGB"):
                        image.load()  # decodes once: a damaged JPEG fails here, not in a viewer
                        raw = src.read_bytes()
                    for frame in _frames(image, src_format):
                        _add_image_page(pdf, frame, raw)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise PermanentError(  # a later frame past the limit
                f"A frame of the image has more than the {MAX_PIXELS // 1_000_000} megapixels "
                "an image may have here",
                code="ENGINE_LIMIT",
            ) from exc
        except (OSError, ValueError, SyntaxError, EOFError) as exc:
            raise PermanentError(
                f"The image could not be read: {exc}", code="INVALID_INPUT_FILE"
            ) from exc
        progress(0.8)
        _save(pdf, dst)


# -- pdf -> pdf: pages, PDF/A -----------------------------------------------------------------
class PdfPdfOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pages: PagesSpec | None = None  # keep only these pages ("1-3,5")
    pdf_a: bool = False  # PDF/A-2b, as the office engine's pdf_a


def _srgb_profile() -> Path:
    icc = next(
        (
            p
            for p in (
                Path("/usr/share/color/icc/ghostscript/srgb.icc"),
                *sorted(Path("/usr/share/ghostscript").glob("*/iccprofiles/srgb.icc")),
            )
            if p.is_file()
        ),
        None,
    )
    if icc is None:
        raise PermanentError("Ghostscript's sRGB profile is missing", code="ENGINE_UNAVAILABLE")
    return icc


def _pdfa_def(work: Path, icc: Path) -> Path:
    """Ghostscript's PDF/A definition file: the sRGB output intent PDF/A requires."""
    definition = work / "pdfa_def.ps"
    definition.write_text(
        f"/ICCProfile ({icc}) def\n"
        "[/_objdef {icc_PDFA} /type /stream /OBJ pdfmark\n"
        "[{icc_PDFA} << /N 3 >> /PUT pdfmark\n"
        "[{icc_PDFA} ICCProfile (r) file /PUT pdfmark\n"
        "[/_objdef {OutputIntent_PDFA} /type /dict /OBJ pdfmark\n"
        "[{OutputIntent_PDFA} << /Type /OutputIntent /S /GTS_PDFA1\n"
        "  /DestOutputProfile {icc_PDFA} /OutputConditionIdentifier (sRGB) >> /PUT pdfmark\n"
        "[{Catalog} << /OutputIntents [ {OutputIntent_PDFA} ] >> /PUT pdfmark\n"
    )
    return definition


def ghostscript(src: Path, dst: Path, args: list[str]) -> None:
    """Ghostscript's pdfwrite over ``src`` (SAFER: it may only read its inputs)."""
    run_tool(
        [
            "gs",
            "-dSAFER",
            "-dBATCH",
            "-dNOPAUSE",
            "-dQUIET",
            "-sDEVICE=pdfwrite",
            *args,
            f"-sOutputFile={dst}",
            str(src),
        ],
        what="Ghostscript",
    )


def to_pdfa(src: Path, dst: Path, part: int = 2) -> None:
    """PDF/A-``part`` level b (1, 2 or 3; 2 by default): fonts embedded, colours as sRGB with
    its output intent, XMP that says so."""
    icc = _srgb_profile()
    definition = _pdfa_def(dst.parent, icc)
    run_tool(
        [
            "gs",
            "-dSAFER",
            "-dBATCH",
            "-dNOPAUSE",
            "-dQUIET",
            f"-dPDFA={part}",
            "-dPDFACompatibilityPolicy=1",  # drop what PDF/A forbids rather than fail
            "-sColorConversionStrategy=RGB",
            "-sDEVICE=pdfwrite",
            f"--permit-file-read={icc}",
            f"-sOutputFile={dst}",
            str(definition),
            str(src),
        ],
        what="Ghostscript (PDF/A)",
    )
    definition.unlink()


class PdfToPdfEngine:
    """A PDF again: only the selected ``pages``, and/or as PDF/A-2b (``pdf_a``)."""

    descriptor = Descriptor(
        id="pdf-pages",
        conversions=frozenset({("pdf", "pdf")}),
        options=PdfPdfOptions,
        queue="light",
        version=_gs_version,
        family="pdf",
        requires=("gs",),
        packages=("ghostscript",),
    )

    def convert(
        self,
        src: Path,
        dst: Path,
        src_format: str,
        dst_format: str,
        options: PdfPdfOptions,
        progress: Progress,
    ) -> None:
        selected = dst.with_name(f"{dst.stem}.pages.pdf") if options.pdf_a else dst
        with open_pdf(src) as pdf:
            keep = set(page_numbers(options.pages, len(pdf.pages)))
            for index in reversed(range(len(pdf.pages))):
                if index not in keep:
                    del pdf.pages[index]
            _save(pdf, selected)
        progress(0.5)
        if options.pdf_a:
            to_pdfa(selected, dst)
            selected.unlink()
        progress(1.0)


# -- rotate ------------------------------------------------------------------------------------
class RotateOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # degrees clockwise, added to each page's own rotation (CloudConvert's ``rotation``), or
    # with ``absolute`` the rotation each page takes (Gotenberg 9's rotate; 0 straightens)
    rotation: Literal[0, 90, 180, 270, -90, -180, -270]
    pages: PagesSpec | None = None  # only these pages ("1-3,5"); default: every page
    absolute: bool = False


class RotateEngine:
    """The same PDF with pages turned (the ``pdf/rotate-pages`` operation); the content is
    not touched, only each page's /Rotate."""

    descriptor = Descriptor(
        id="pdf-rotate",
        conversions=frozenset(),
        options=RotateOptions,
        queue="light",
        version=_version,
        family="pdf",
    )

    def convert(
        self,
        src: Path,
        dst: Path,
        src_format: str,
        dst_format: str,
        options: RotateOptions,
        progress: Progress,
    ) -> None:
        with open_pdf(src) as pdf:
            for index in page_numbers(options.pages, len(pdf.pages)):
                pdf.pages[index].rotate(options.rotation, relative=not options.absolute)
            _save(pdf, dst)
        progress(1.0)


# -- split -------------------------------------------------------------------------------------
class SplitOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class SplitEngine:
    """One PDF per page (the ``pdf/split-pages`` operation)."""

    descriptor = Descriptor(
        id="pdf-split",
        conversions=frozenset(),
        options=SplitOptions,
        queue="light",
        version=_version,
        family="pdf",
    )

    def convert(
        self,
        src: Path,
        dst: Path,
        src_format: str,
        dst_format: str,
        options: SplitOptions,
        progress: Progress,
    ) -> list[Path]:
        pikepdf = _pikepdf()
        outputs = []
        with open_pdf(src) as pdf:
            count = len(pdf.pages)
            for index, page in enumerate(pdf.pages):
                single = pikepdf.new()
                single.pages.append(page)
                out = dst.with_name(f"{dst.stem}-page{index + 1}.pdf")
                _save(single, out)
                outputs.append(out)
                progress((index + 1) / count)
        return outputs


# -- merge -------------------------------------------------------------------------------------
class MergeOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class MergeEngine:
    """PDFs into one, in the given order (the ``merge`` operation; inputs already made PDFs)."""

    descriptor = Descriptor(
        id="pdf-merge",
        conversions=frozenset(),
        options=MergeOptions,
        queue="light",
        version=_version,
        family="pdf",
    )

    def convert(
        self,
        src: Path,
        dst: Path,
        src_format: str,
        dst_format: str,
        options: MergeOptions,
        progress: Progress,
    ) -> None:
        self.combine([src], dst, dst_format, options, progress)

    def combine(
        self, srcs: list[Path], dst: Path, dst_format: str, options: Any, progress: Progress
    ) -> None:
        pikepdf = _pikepdf()
        merged = pikepdf.new()
        opened = []
        try:
            for n, src in enumerate(srcs, start=1):
                pdf = open_pdf(src)
                opened.append(pdf)
                merged.pages.extend(pdf.pages)
                progress(0.8 * n / len(srcs))
            _save(merged, dst)
        finally:
            for pdf in opened:
                pdf.close()


# -- optimize ----------------------------------------------------------------------------------
Profile = Literal["web", "print", "archive", "mrc", "max"]
# CloudConvert's profiles -> Ghostscript's image settings (None: lossless only). "mrc" (mixed
# raster content) is not implemented as such; its nearest here is the smallest profile.
GS_SETTINGS: dict[str, str | None] = {
    "web": "/ebook",  # 150 dpi images
    "print": "/printer",  # 300 dpi
    "archive": None,
    "mrc": "/screen",
    "max": "/screen",  # 72 dpi
}
# jpg quality per profile (None: lossless re-encode only)
JPEG_QUALITY: dict[str, int | None] = {
    "web": 80,
    "print": 92,
    "archive": None,
    "mrc": 60,
    "max": 60,
}


class OptimizeOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    profile: Profile = "web"


class OptimizeEngine:
    """Smaller files of the same format (the ``optimize`` operation): pdf, jpg, png.

    The result is never larger than the input: when no candidate is smaller, the input is
    returned unchanged.
    """

    descriptor = Descriptor(
        id="optimize",
        conversions=frozenset(),
        options=OptimizeOptions,
        queue="light",
        version=_gs_version,
        family="pdf",
        requires=("gs",),
        packages=("ghostscript",),
    )
    formats = ("pdf", "jpg", "png")

    def convert(
        self,
        src: Path,
        dst: Path,
        src_format: str,
        dst_format: str,
        options: OptimizeOptions,
        progress: Progress,
    ) -> None:
        if src_format not in self.formats:
            raise PermanentError(
                f"optimize takes {', '.join(self.formats)}, not {src_format}",
                code="INVALID_CONVERSION_TYPE",
            )
        candidates = {
            "pdf": self._pdf,
            "jpg": self._jpg,
            "png": self._png,
        }[src_format](src, dst, options.profile)
        progress(0.9)
        best = min(candidates, key=lambda p: p.stat().st_size, default=src)
        if best.stat().st_size >= src.stat().st_size:
            best = src
        shutil.copyfile(best, dst)
        for path in candidates:
            path.unlink()

    def _pdf(self, src: Path, dst: Path, profile: str) -> list[Path]:
        linearize = profile == "web"  # fast web view: the first page shows before the rest
        lossless = dst.with_name("lossless.pdf")
        with open_pdf(src) as pdf:
            _save(pdf, lossless, linearize=linearize)
        candidates = [lossless]
        setting = GS_SETTINGS[profile]
        if setting is not None:
            rewritten = dst.with_name("gs.pdf")
            ghostscript(
                src,
                rewritten,
                [f"-dPDFSETTINGS={setting}", "-dCompatibilityLevel=1.7", "-dDetectDuplicateImages"],
            )
            again = dst.with_name("gs-packed.pdf")
            with open_pdf(rewritten) as pdf:
                _save(pdf, again, linearize=linearize)
            rewritten.unlink()
            candidates.append(again)
        return candidates

    def _jpg(self, src: Path, dst: Path, profile: str) -> list[Path]:
        vips = vips_module()
        out = dst.with_name("candidate.jpg")
        quality = JPEG_QUALITY[profile]
        try:
            image = vips.Image.new_from_file(str(src), fail_on="truncated")
            image.jpegsave(str(out), Q=quality or 95, optimize_coding=True, keep="icc")
        except vips.Error as exc:
            raise PermanentError(
                f"The image could not be read: {exc.message.strip()}", code="INVALID_INPUT_FILE"
            ) from exc
        if quality is None:  # archive: re-encoding a JPEG loses quality; keep the original
            out.unlink()
            return []
        return [out]

    def _png(self, src: Path, dst: Path, profile: str) -> list[Path]:
        vips = vips_module()
        out = dst.with_name("candidate.png")
        try:
            image = vips.Image.new_from_file(str(src), fail_on="truncated")
            if profile in ("max", "mrc", "web"):  # palette (lossy): far smaller for most images
                image.pngsave(str(out), compression=9, palette=True, Q=90, keep="icc")
            else:
                image.pngsave(str(out), compression=9, keep="icc")
        except vips.Error as exc:
            raise PermanentError(
                f"The image could not be read: {exc.message.strip()}", code="INVALID_INPUT_FILE"
            ) from exc
        return [out]
