"""What the engines can tell about a file (the `metadata` task), read inside the sandbox.

Images through libvips (size, bands, colour space, resolution, basic EXIF), PDFs through
PDFium (page count, version, document info, first page size), audio and video through ffprobe
(duration, bit rate, streams, tags). Keys follow exiftool's names, as CloudConvert's metadata
task does. The result is written as JSON to the output file; the worker reads it back.

Not part of the format graph: the engine declares no conversion pairs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import msgspec

from appliance.engines import Descriptor, Progress
from appliance.engines.images import vips_module
from appliance.engines.media import AUDIO, VIDEO
from appliance.engines.tools import run_tool, tool_version
from appliance.errors import PermanentError

IMAGES = ("png", "jpg", "webp", "avif", "tiff", "gif", "heic")
# libvips field -> exiftool name, for the EXIF basics
EXIF = {
    "exif-ifd0-Make": "Make",
    "exif-ifd0-Model": "Model",
    "exif-ifd0-Software": "Software",
    "exif-ifd0-DateTime": "ModifyDate",
    "exif-ifd2-DateTimeOriginal": "DateTimeOriginal",
    "exif-ifd2-ExposureTime": "ExposureTime",
    "exif-ifd2-FNumber": "FNumber",
    "exif-ifd2-ISOSpeedRatings": "ISO",
    "exif-ifd2-FocalLength": "FocalLength",
    "orientation": "Orientation",
}
# Given as numbers (FNumber 2.8, FocalLength in mm 35.0, ISO 400), as exiftool's JSON does;
# ExposureTime stays a fraction of a second ("1/250"), as there.
NUMERIC_EXIF = frozenset({"FNumber", "FocalLength", "ISO"})
_RATIONAL = re.compile(r"(\d+)/(\d+)")
PDF_INFO = ("Title", "Author", "Subject", "Keywords", "Creator", "Producer")
_VIPS_SUFFIX = re.compile(r"\s*\([^()]*\)\s*$")  # libvips appends "(raw, type, n components)"


class MetadataOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class MetadataEngine:
    descriptor = Descriptor(
        id="metadata",
        conversions=frozenset(),
        options=MetadataOptions,
        queue="light",
        version=lambda: f"metadata-1+{tool_version('ffprobe', '-version')}",
        family="media",
        requires=("ffprobe",),
        packages=("ffmpeg",),
    )

    def convert(
        self,
        src: Path,
        dst: Path,
        src_format: str,
        dst_format: str,
        options: MetadataOptions,
        progress: Progress,
    ) -> None:
        found: dict[str, Any] = {"FileType": src_format.upper()}
        if src_format in IMAGES:
            found |= _image(src)
        elif src_format == "pdf":
            found |= _pdf(src)
        elif src_format in AUDIO or src_format in VIDEO:
            found |= _media(src)
        dst.write_text(json.dumps(found, ensure_ascii=False, default=str))
        progress(1.0)


def _image(src: Path) -> dict[str, Any]:
    vips = vips_module()
    try:
        image = vips.Image.new_from_file(str(src), access="sequential", fail_on="truncated")
    except vips.Error as exc:
        raise PermanentError(
            f"The image could not be read: {exc.message.strip()}", code="INVALID_INPUT_FILE"
        ) from exc
    out: dict[str, Any] = {
        "ImageWidth": image.width,
        "ImageHeight": image.height,
        "Bands": image.bands,
        "ColorSpace": str(image.interpretation),
        "HasAlpha": bool(image.hasalpha()),
        "XResolution": round(image.xres * 25.4, 2),  # libvips keeps pixels per mm; give dpi
        "YResolution": round(image.yres * 25.4, 2),
    }
    fields = set(image.get_fields())
    if "n-pages" in fields:
        out["Frames"] = image.get("n-pages")
    for field, name in EXIF.items():
        if field in fields:
            value = image.get(field)
            value = _VIPS_SUFFIX.sub("", value) if isinstance(value, str) else value
            out[name] = _number(value) if name in NUMERIC_EXIF else value
    return out


def _number(value: Any) -> Any:
    """A rational or integer EXIF value ("14/5", "400") as exiftool gives it: a number
    (2.8, 400); anything else as it is."""
    if not isinstance(value, str):
        return value
    if value.isdigit():
        return int(value)
    ratio = _RATIONAL.fullmatch(value)
    if ratio and int(ratio[2]):
        return round(int(ratio[1]) / int(ratio[2]), 2)
    return value


def _pdf(src: Path) -> dict[str, Any]:
    from appliance.engines.pdf import open_pdfium

    with open_pdfium(src) as doc:
        out: dict[str, Any] = {"PageCount": len(doc)}
        version = doc.get_version()
        if version:
            out["PDFVersion"] = f"{version // 10}.{version % 10}"
        info = doc.get_metadata_dict(skip_empty=True)
        out |= {key: info[key] for key in PDF_INFO if key in info}
        for key, name in (("CreationDate", "CreateDate"), ("ModDate", "ModifyDate")):
            if key in info:
                out[name] = info[key]
        if len(doc):
            width, height = doc[0].get_size()
            out["PageWidth"], out["PageHeight"] = round(width, 2), round(height, 2)
        return out


def _media(src: Path) -> dict[str, Any]:
    done = run_tool(
        ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", str(src)],
        what="ffprobe",
    )
    probe = json.loads(done.stdout or b"{}")
    fmt = probe.get("format", {})
    out: dict[str, Any] = {}
    if "duration" in fmt:
        out["Duration"] = round(float(fmt["duration"]), 3)  # seconds
    if "bit_rate" in fmt:
        out["AvgBitrate"] = int(fmt["bit_rate"])
    if "format_name" in fmt:
        out["ContainerFormat"] = fmt["format_name"]
    for key, value in (fmt.get("tags") or {}).items():
        out[key.title()] = value
    out["Streams"] = [_stream(s) for s in probe.get("streams", [])]
    return out


def _stream(stream: dict[str, Any]) -> dict[str, Any]:
    keep = {
        "codec_type": "Type",
        "codec_name": "Codec",
        "width": "ImageWidth",
        "height": "ImageHeight",
        "avg_frame_rate": "FrameRate",
        "sample_rate": "SampleRate",
        "channels": "AudioChannels",
        "duration": "Duration",
    }
    out = {name: stream[key] for key, name in keep.items() if key in stream}
    if "sample_rate" in stream:
        out["SampleRate"] = int(stream["sample_rate"])
    if "duration" in stream:
        out["Duration"] = round(float(stream["duration"]), 3)
    return out
