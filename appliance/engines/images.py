"""Raster images with libvips (pyvips): png, jpg, webp, avif, tiff, gif, bmp.

libvips has no BMP coder in the bundled build, so BMP goes through Pillow's encoder/decoder as
raw pixels; everything else stays inside libvips.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from appliance.engines import Descriptor, Progress
from appliance.engines.pixels import check_pixels, pillow_size
from appliance.engines.tools import scrub_paths
from appliance.errors import PermanentError

FORMATS = ("png", "jpg", "webp", "avif", "tiff", "gif", "bmp")
ENGINE_REVISION = "2"  # bump when output for the same input and options changes
_HUGE = 10_000_000  # "unbounded" side for vips thumbnail
# A truncated or damaged file is an error, not a silently half-grey image.
FAIL_ON = "truncated"
# The largest side each encoder writes (libheif's AV1 and libwebp's limits, JPEG's 16 bits
# less libjpeg's margin, GIF's 16 bits); png, tiff and bmp take any the pixel limit allows.
MAX_SIDE = {"webp": 16383, "avif": 16384, "jpg": 65500, "gif": 65535}


class ImageOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """CloudConvert's image options."""

    width: Annotated[int, msgspec.Meta(ge=1, le=20000)] | None = None
    height: Annotated[int, msgspec.Meta(ge=1, le=20000)] | None = None
    fit: Literal["max", "crop", "scale", "upscale"] = "max"
    quality: Annotated[int, msgspec.Meta(ge=1, le=100)] | None = None
    strip: bool = False


@cache
def vips_module() -> Any:
    import pyvips

    pyvips.block_untrusted_set(True)  # no loaders libvips marks unsafe for untrusted input
    pyvips.cache_set_max(0)  # every file is new; the operation cache only grows memory
    return pyvips


def _version() -> str:
    v = vips_module()
    return f"libvips-{v.version(0)}.{v.version(1)}.{v.version(2)}+{ENGINE_REVISION}"


class ImageEngine:
    descriptor = Descriptor(
        id="vips",
        conversions=frozenset((a, b) for a in FORMATS for b in FORMATS if a != b),
        options=ImageOptions,
        queue="light",
        version=_version,
        family="images",
    )

    def convert(
        self,
        src: Path,
        dst: Path,
        src_format: str,
        dst_format: str,
        options: ImageOptions,
        progress: Progress,
    ) -> None:
        vips = vips_module()
        try:
            _check_source(vips, src, src_format)
            image = self._load(vips, src, src_format, options)
            progress(0.5)
            _check_target(image, dst_format)
            self._save(vips, image, dst, dst_format, options)
        except vips.Error as exc:
            first_page = _tiff_by_pillow(src, dst) if src_format == "tiff" else None
            if first_page is None:
                raise _failure(exc) from exc
        else:
            return
        # libvips' libtiff here lacks some codings (old-style JPEG, from scanners and fax
        # software); Pillow's decodes them: its first page, as PNG, converted instead
        self.convert(first_page, dst, "png", dst_format, options, progress)

    def _load(self, vips: Any, src: Path, fmt: str, o: ImageOptions) -> Any:
        if fmt == "bmp":
            image = _bmp_load(vips, src)
            if o.width or o.height:
                return _resize(vips, image, o)
            return image
        if (o.width or o.height) and o.fit != "scale":
            return vips.Image.thumbnail(
                str(src),
                o.width or _HUGE,
                height=o.height or _HUGE,
                size="both" if o.fit == "upscale" else "down",
                crop="centre" if o.fit == "crop" else "none",
                fail_on=FAIL_ON,
            )
        image = vips.Image.new_from_file(str(src), access="sequential", fail_on=FAIL_ON)
        return _resize(vips, image, o) if (o.width or o.height) else image

    def _save(self, vips: Any, image: Any, dst: Path, fmt: str, o: ImageOptions) -> None:
        if fmt in ("jpg", "bmp") and image.hasalpha():
            image = image.flatten(background=255)
        if fmt == "bmp":
            _bmp_save(image, dst)
            return
        kwargs: dict[str, Any] = {}
        if o.strip:
            kwargs["keep"] = "none"
        if o.quality is not None and fmt in ("jpg", "webp", "avif", "tiff"):
            kwargs["Q"] = o.quality
            if fmt == "tiff":
                kwargs["compression"] = "jpeg"
        image.write_to_file(
            str(dst.with_suffix("." + fmt)) if dst.suffix != "." + fmt else str(dst), **kwargs
        )


def _check_source(vips: Any, src: Path, fmt: str) -> None:
    """The pixel limit, from the header (libvips decodes nothing until pixels are asked for;
    of a multi-page file, the first page, which is all that is converted)."""
    if fmt == "bmp":
        size = pillow_size(src)
        if size is not None:
            check_pixels(*size)
        return
    header = vips.Image.new_from_file(str(src), access="sequential")
    check_pixels(header.width, header.height)


def _tiff_by_pillow(src: Path, dst: Path) -> Path | None:
    """The TIFF's first page decoded by Pillow, as a PNG beside ``dst``; None when Pillow
    cannot read it either."""
    from PIL import Image, UnidentifiedImageError

    page = dst.with_name(f"pillow-{dst.stem}.png")
    try:
        with Image.open(src, formats=["TIFF"]) as image:
            check_pixels(*image.size)
            image.save(page, format="PNG")
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, EOFError):
        return None
    return page


def _check_target(image: Any, fmt: str) -> None:
    """The largest side the target format's encoder takes (libvips only says "too large")."""
    side = MAX_SIDE.get(fmt)
    if side is not None and max(image.width, image.height) > side:
        raise PermanentError(
            f"The image is {image.width} x {image.height} pixels; {fmt} holds at most {side} "
            "pixels a side (the width and height options make it smaller)",
            code="ENGINE_LIMIT",
        )


def _failure(exc: Any) -> PermanentError:
    """libvips' own reason (its error detail, not "unable to call ..."), without the file's
    path; running out of memory is the engine's limit, not the file's fault."""
    lines = [line.strip() for line in f"{exc.detail}\n{exc.message}".splitlines() if line.strip()]
    reason = scrub_paths(lines[0] if lines else "unknown error")
    if reason.startswith(("unable to call", "unable to load")):  # libvips said nothing more
        saving = "Save" in reason
        reason = "it could not be written" if saving else "the file is damaged or not an image"
    if "out of memory" in reason.lower() or "cannot allocate" in reason.lower():
        return PermanentError(
            "The image needs more memory than the engine may use", code="ENGINE_LIMIT"
        )
    return PermanentError(f"The image could not be converted: {reason}", code="INVALID_INPUT_FILE")


def _resize(vips: Any, image: Any, o: ImageOptions) -> Any:
    """Resize an already-loaded image (BMP input, or fit=scale which distorts)."""
    w, h = image.width, image.height
    if o.fit == "scale":
        hscale = (o.width or w) / w
        vscale = (o.height or h) / h
        if not o.width:
            hscale = vscale
        if not o.height:
            vscale = hscale
        return image.resize(hscale, vscale=vscale)
    return image.thumbnail_image(
        o.width or _HUGE,
        height=o.height or _HUGE,
        size="both" if o.fit == "upscale" else "down",
        crop="centre" if o.fit == "crop" else "none",
    )


def _bmp_load(vips: Any, src: Path) -> Any:
    from PIL import Image

    try:
        with Image.open(src, formats=["BMP"]) as opened:
            im = opened.convert("RGBA" if opened.mode in ("RGBA", "LA", "P") else "RGB")
            bands = len(im.getbands())
            return vips.Image.new_from_memory(im.tobytes(), im.width, im.height, bands, "uchar")
    except (OSError, ValueError) as exc:
        raise PermanentError(
            f"The BMP file could not be read: {exc}", code="INVALID_INPUT_FILE"
        ) from exc


def _bmp_save(image: Any, dst: Path) -> None:
    from PIL import Image

    image = image.cast("uchar")
    if image.bands == 2:
        image = image[0]
    if image.bands not in (1, 3):
        image = image[:3]
    mode = "L" if image.bands == 1 else "RGB"
    Image.frombytes(mode, (image.width, image.height), image.write_to_memory()).save(
        dst, format="BMP"
    )
