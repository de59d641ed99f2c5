"""CloudConvert's ``watermark`` task on PDFs (images: ``watermark_raster``), in the sandboxed
helper: a text or an image
stamped on the chosen pages, above or below their content, placed by position and margins,
turned and made translucent.

The stamp is one form XObject shared by every page (the file grows once, not per page),
drawn with an ExtGState for the opacity. Text is set in the PDF standard fonts (not
embedded: every reader has them), measured with the metric-compatible URW fonts Ghostscript
installs; CloudConvert's other font names map to the nearest standard family. Positions
are taken on the page as it is shown, so a page with /Rotate gets an upright stamp.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from appliance.engines import Descriptor, Progress
from appliance.engines.pdf import page_numbers
from appliance.engines.pdfedit import save
from appliance.engines.pdftools import PagesSpec, image_xobject, open_unlocked
from appliance.engines.pixels import MAX_PIXELS
from appliance.engines.watermark_raster import FORMATS as RASTER_FORMATS
from appliance.engines.watermark_raster import stamp_raster
from appliance.errors import PermanentError

ENGINE_REVISION = "1"  # bump when output for the same input and options changes
URW = Path("/usr/share/fonts/type1/urw-base35")
LEADING = 1.2  # line height, in font sizes
FontName = Literal[
    "Andale Mono", "Arial", "Arial Black", "Arial Bold", "Arial Bold Italic", "Arial Italic",
    "Courier New", "Courier New Bold", "Courier New Bold Italic", "Courier New Italic",
    "Georgia", "Georgia Bold", "Georgia Bold Italic", "Georgia Italic",
    "Helvetica", "Helvetica Bold", "Helvetica BoldOblique", "Helvetica Narrow Bold",
    "Helvetica Narrow BoldOblique", "Helvetica Oblique", "Impact",
    "Times New Roman", "Times New Roman Bold", "Times New Roman Bold Italic",
    "Times New Roman Italic", "Trebuchet MS", "Trebuchet MS Bold", "Trebuchet MS Bold Italic",
    "Trebuchet MS Italic", "Verdana", "Verdana Bold", "Verdana Bold Italic", "Verdana Italic",
]  # fmt: skip
Points = Annotated[int, msgspec.Meta(ge=0, le=14_400)]  # PDF's largest page side


class WatermarkOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pages: PagesSpec | None = None  # only these pages ("1-3,5"); default: every page
    layer: Literal["above", "below"] = "above"  # over the page's content, or under it
    text: Annotated[str, msgspec.Meta(min_length=1, max_length=2000)] | None = None
    font_size: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 40  # points
    font_width_percent: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100  # horizontal scale
    font_color: Annotated[str, msgspec.Meta(pattern=r"^#[0-9A-Fa-f]{6}$")] = "#000000"
    font_name: FontName = "Helvetica"
    font_align: Literal["left", "center", "right"] = "center"  # lines of a text, to each other
    # the name of the task whose (first) file is the watermark image: png, jpg, ...
    image: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None
    image_width: Annotated[int, msgspec.Meta(ge=1, le=14_400)] | None = None  # points
    image_height: Annotated[int, msgspec.Meta(ge=1, le=14_400)] | None = None  # points
    image_width_percent: Annotated[int, msgspec.Meta(ge=1, le=100)] | None = None  # of the page
    position_vertical: Literal["top", "center", "bottom"] = "center"
    position_horizontal: Literal["left", "center", "right"] = "center"
    margin_vertical: Points = 25  # from the top or bottom edge, points
    margin_horizontal: Points = 25  # from the left or right edge, points
    opacity: Annotated[int, msgspec.Meta(ge=0, le=100)] = 100  # percent
    rotation: Annotated[int, msgspec.Meta(ge=-360, le=360)] = 0  # degrees, counter-clockwise

    def __post_init__(self) -> None:
        if (self.text is None) == (self.image is None):
            raise ValueError("text or image is needed (one of them, not both)")


def _version() -> str:
    import pikepdf

    return f"pikepdf-{pikepdf.__version__}+{ENGINE_REVISION}"


# -- the stamp ---------------------------------------------------------------------------------
def standard_font(name: str) -> tuple[str, str, float]:
    """The standard (base-14) font for one of CloudConvert's names, its URW metric twin, and
    the horizontal scale that makes it narrow (Helvetica Narrow is Helvetica at 82%)."""
    bold = "Bold" in name or name in ("Arial Black", "Impact")
    slanted = "Italic" in name or "Oblique" in name
    if name.startswith(("Courier", "Andale")):
        base, urw, styles = "Courier", "NimbusMonoPS", ("", "-Bold", "-Oblique", "-BoldOblique")
    elif name.startswith(("Times", "Georgia")):
        base, urw, styles = "Times", "NimbusRoman", ("-Roman", "-Bold", "-Italic", "-BoldItalic")
    else:
        base, urw, styles = "Helvetica", "NimbusSans", ("", "-Bold", "-Oblique", "-BoldOblique")
    style = styles[bold + 2 * slanted]
    urw_style = ("-Regular", "-Bold", "-Italic", "-BoldItalic")[bold + 2 * slanted]
    return base + style, f"{urw}{urw_style}.t1", 0.82 if "Narrow" in name else 1.0


@cache
def _metrics(urw_file: str) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.truetype(str(URW / urw_file), 1000)  # 1000 units per em, as AFM
    except OSError as exc:
        raise PermanentError(
            "The standard fonts (fonts-urw-base35) are missing", code="ENGINE_UNAVAILABLE"
        ) from exc


def _pdf_string(text: str) -> bytes:
    """A line as a PDF literal string in WinAnsiEncoding (what it cannot hold becomes ?)."""
    raw = text.encode("cp1252", "replace")
    return b"(" + re.sub(rb"([()\\])", rb"\\\1", raw) + b")"


def _text_form(pdf: Any, o: WatermarkOptions) -> tuple[Any, float, float]:
    """The text as a form XObject, and its width and height in points."""
    import pikepdf

    assert o.text is not None
    base, urw, narrow = standard_font(o.font_name)
    scale = narrow * o.font_width_percent / 100
    measure = _metrics(urw)
    lines = o.text.replace("\r\n", "\n").split("\n")
    widths = [
        measure.getlength(line.encode("cp1252", "replace").decode("cp1252")) for line in lines
    ]
    widths = [w * o.font_size / 1000 * scale for w in widths]
    width, height = max(max(widths), 1.0), len(lines) * o.font_size * LEADING
    red, green, blue = (int(o.font_color[i : i + 2], 16) / 255 for i in (1, 3, 5))
    ops = [f"BT /F1 {o.font_size} Tf {scale * 100:.2f} Tz {red:.3f} {green:.3f} {blue:.3f} rg"]
    for n, (line, w) in enumerate(zip(lines, widths, strict=True)):
        x = {"left": 0.0, "center": (width - w) / 2, "right": width - w}[o.font_align]
        y = height - (n + 1) * o.font_size * LEADING + 0.25 * o.font_size  # baseline
        ops.append(f"1 0 0 1 {x:.3f} {y:.3f} Tm {_pdf_string(line).decode('latin-1')} Tj")
    ops.append("ET")
    font = pikepdf.Dictionary(
        Type=pikepdf.Name.Font,
        Subtype=pikepdf.Name.Type1,
        BaseFont=pikepdf.Name("/" + base),
        Encoding=pikepdf.Name.WinAnsiEncoding,
    )
    return (
        _form(pdf, "\n".join(ops).encode("latin-1"), width, height, Font={"/F1": font}),
        width,
        height,
    )


def _image_form(pdf: Any, image_path: Path, o: WatermarkOptions, page_width: float) -> Any:
    """The image as a form XObject (1 x 1, scaled where it is drawn), and its size in points."""
    import warnings

    from PIL import Image

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(image_path) as image:
                image.load()
                raw = image_path.read_bytes() if image.format == "JPEG" else None
                raw = raw if image.mode in ("L", "RGB") else None
                xobject = image_xobject(pdf, image, raw)
                dpi = image.info.get("dpi") or (72, 72)
                natural = (
                    image.width * 72 / float(dpi[0] or 72),
                    image.height * 72 / float(dpi[1] or 72),
                )
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PermanentError(
            f"The watermark image has more than {MAX_PIXELS} pixels", code="ENGINE_LIMIT"
        ) from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise PermanentError(
            "The watermark image could not be read", code="INVALID_INPUT_FILE"
        ) from exc
    width, height = _image_size(natural, o, page_width)
    content = f"{width:.3f} 0 0 {height:.3f} 0 0 cm /Im0 Do".encode()
    return _form(pdf, content, width, height, XObject={"/Im0": xobject}), width, height


def _image_size(
    natural: tuple[float, float], o: WatermarkOptions, page_width: float
) -> tuple[float, float]:
    """The image's size in points: as given (the other side keeping its proportion), else
    at its own resolution."""
    ratio = natural[1] / natural[0]
    if o.image_width_percent is not None:
        width = page_width * o.image_width_percent / 100
        return width, width * ratio
    if o.image_width is not None and o.image_height is not None:
        return float(o.image_width), float(o.image_height)
    if o.image_width is not None:
        return float(o.image_width), o.image_width * ratio
    if o.image_height is not None:
        return o.image_height / ratio, float(o.image_height)
    return natural


def _form(pdf: Any, content: bytes, width: float, height: float, **resources: Any) -> Any:
    import pikepdf

    return pikepdf.Stream(
        pdf,
        content,
        Type=pikepdf.Name.XObject,
        Subtype=pikepdf.Name.Form,
        BBox=[0, 0, width, height],
        Resources=pikepdf.Dictionary(
            {f"/{k}": pikepdf.Dictionary(v) for k, v in resources.items()}
        ),
    )


# -- placing it ----------------------------------------------------------------------------------
def _shown_to_user(box: list[float], rotate: int) -> tuple[float, ...]:
    """The matrix from the page as shown (origin at its lower left) to its user space."""
    x0, y0, x1, y1 = box
    width, height = x1 - x0, y1 - y0
    return {
        0: (1, 0, 0, 1, x0, y0),
        90: (0, 1, -1, 0, x0 + width, y0),
        180: (-1, 0, 0, -1, x0 + width, y0 + height),
        270: (0, -1, 1, 0, x0, y0 + height),
    }[rotate % 360]


def _placement(page: Any, o: WatermarkOptions, width: float, height: float) -> str:
    """The ``cm`` operand that draws a ``width`` x ``height`` stamp where the options say."""
    import math

    box = [float(v) for v in page.cropbox]
    rotate = int(page.obj.get("/Rotate", 0)) % 360
    shown_w, shown_h = box[2] - box[0], box[3] - box[1]
    if rotate in (90, 270):
        shown_w, shown_h = shown_h, shown_w
    angle = math.radians(o.rotation)
    cos, sin = math.cos(angle), math.sin(angle)
    # the turned stamp's bounding box decides how far its centre stays from the edges
    half_w = (abs(cos) * width + abs(sin) * height) / 2
    half_h = (abs(sin) * width + abs(cos) * height) / 2
    cx = {"left": o.margin_horizontal + half_w, "center": shown_w / 2,
          "right": shown_w - o.margin_horizontal - half_w}[o.position_horizontal]  # fmt: skip
    cy = {"bottom": o.margin_vertical + half_h, "center": shown_h / 2,
          "top": shown_h - o.margin_vertical - half_h}[o.position_vertical]  # fmt: skip
    # stamp space -> shown page: centre the stamp on the origin, turn it, move it to (cx, cy)
    stamp = (cos, sin, -sin, cos, cx - cos * width / 2 + sin * height / 2,
             cy - sin * width / 2 - cos * height / 2)  # fmt: skip
    matrix = _multiply(stamp, _shown_to_user(box, rotate))
    return " ".join(f"{v:.4f}" for v in matrix)


def _multiply(m: tuple[float, ...], n: tuple[float, ...]) -> tuple[float, ...]:
    """``m`` then ``n``, as PDF concatenates matrices."""
    a, b, c, d, e, f = m
    p, q, r, s, t, u = n
    return (a * p + b * r, a * q + b * s, c * p + d * r, c * q + d * s,
            e * p + f * r + t, e * q + f * s + u)  # fmt: skip


def stamp(pdf: Any, o: WatermarkOptions, image: Path | None, progress: Progress) -> None:
    """Stamps the chosen pages of ``pdf`` in place."""
    import pikepdf

    indexes = page_numbers(o.pages, len(pdf.pages))
    alpha = pdf.make_indirect(
        pikepdf.Dictionary(Type=pikepdf.Name.ExtGState, ca=o.opacity / 100, CA=o.opacity / 100)
    )
    forms: dict[float, tuple[Any, float, float]] = {}  # the image's size follows the page's
    for n, index in enumerate(indexes, start=1):
        page = pdf.pages[index]
        if image is None:
            forms.setdefault(0.0, _text_form(pdf, o))
            form, width, height = forms[0.0]
        else:
            page_width = float(page.cropbox[2]) - float(page.cropbox[0])
            if int(page.obj.get("/Rotate", 0)) % 180:
                page_width = float(page.cropbox[3]) - float(page.cropbox[1])
            key = page_width if o.image_width_percent is not None else 0.0
            if key not in forms:
                forms[key] = _image_form(pdf, image, o, page_width)
            form, width, height = forms[key]
        name = page.add_resource(form, pikepdf.Name.XObject, prefix="Wm")
        state = page.add_resource(alpha, pikepdf.Name.ExtGState, prefix="WmGS")
        draw = f"q {_placement(page, o, width, height)} cm {state} gs {name} Do Q\n".encode()
        if o.layer == "above":
            page.contents_add(b"q\n", prepend=True)  # the page's own state ends before ours
            page.contents_add(b"\nQ\n" + draw)
        else:
            page.contents_add(draw, prepend=True)
        progress(n / len(indexes))


class WatermarkEngine:
    """The ``watermark`` operation on PDFs (and on png, jpg and webp: ``watermark_raster``):
    ``convert`` for a text, ``combine`` with the image as the second input for an image."""

    descriptor = Descriptor(
        id="watermark",
        conversions=frozenset(),
        options=WatermarkOptions,
        queue="light",
        version=_version,
        family="pdf",
        packages=("fonts-urw-base35",),
    )

    def convert(
        self,
        src: Path,
        dst: Path,
        src_format: str,
        dst_format: str,
        options: WatermarkOptions,
        progress: Progress,
    ) -> None:
        self.combine([src], dst, dst_format, options, progress)

    def combine(
        self, srcs: list[Path], dst: Path, dst_format: str, options: Any, progress: Progress
    ) -> None:
        image = srcs[1] if len(srcs) > 1 else None
        if (image is None) != (options.image is None):
            raise PermanentError("The watermark image is missing", code="INVALID_OPTIONS")
        if dst_format in RASTER_FORMATS:
            stamp_raster(srcs[0], dst, dst_format, options, image, progress)
            return
        with open_unlocked(srcs[0]) as pdf:
            stamp(pdf, options, image, lambda f: progress(0.9 * f))
            save(pdf, dst)
        progress(1.0)
