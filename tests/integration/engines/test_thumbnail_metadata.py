"""The thumbnail and metadata engines in the sandboxed helper: thumbnails of an image, a PDF's
first page and a video frame, opened and measured, and several of them (``count``): a PDF's
first pages, frames spread over a video; metadata of an image, a PDF and audio."""

from __future__ import annotations

import json
import subprocess

import pytest
import pyvips

from appliance.engines.enabled import enabled_engines
from appliance.engines.metadata import MetadataEngine, MetadataOptions
from appliance.engines.registry import Registry
from appliance.engines.sandbox import SandboxedEngine
from appliance.engines.thumbnail import ThumbnailEngine, ThumbnailOptions, thumbnail_route
from appliance.errors import PermanentError

SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="400" height="200">'
    '<rect width="400" height="200" fill="#c33"/></svg>'
)
COLOURS = ("#ff0000", "#00ff00", "#0000ff")
RGB = {"#ff0000": [255, 0, 0], "#00ff00": [0, 255, 0], "#0000ff": [0, 0, 255]}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("thumb-in")
    png = root / "wide.png"
    pyvips.Image.black(400, 200).draw_rect(255, 0, 0, 200, 200, fill=True).write_to_file(str(png))
    svg = root / "in.svg"
    svg.write_text(SVG)
    pdf = root / "two.pdf"
    subprocess.run(["rsvg-convert", "-f", "pdf", "-o", str(pdf), str(svg), str(svg)], check=True)
    mp4 = root / "clip.mp4"
    subprocess.run(
        [
            *("ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=10:d=1"),
            *("-pix_fmt", "yuv420p", str(mp4)),
        ],
        check=True,
    )
    wav = root / "tone.wav"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=duration=1.5", str(wav)], check=True
    )
    # three pages, red, green, blue; a 3 s video, one second of each colour
    colours = root / "colours.pdf"
    pages = []
    for colour in COLOURS:
        page = root / f"{colour}.svg"
        page.write_text(SVG.replace("#c33", colour))
        pages.append(str(page))
    subprocess.run(["rsvg-convert", "-f", "pdf", "-o", str(colours), *pages], check=True)
    seconds = root / "colours.mp4"
    sources = [a for c in COLOURS for a in ("-f", "lavfi", "-i", f"color=c={c}:s=160x120:d=1")]
    subprocess.run(
        [
            *("ffmpeg", "-v", "error", *sources),
            *("-filter_complex", "concat=n=3:v=1:a=0", "-pix_fmt", "yuv420p", str(seconds)),
        ],
        check=True,
    )
    return {
        "png": png,
        "pdf": pdf,
        "mp4": mp4,
        "wav": wav,
        "colours.pdf": colours,
        "colours.mp4": seconds,
    }


@pytest.mark.parametrize(
    ("src_fmt", "out_fmt", "options", "size"),
    [
        ("png", "jpg", ThumbnailOptions(width=100), (100, 50)),
        ("png", "webp", ThumbnailOptions(width=80, height=80, fit="crop"), (80, 80)),
        ("png", "png", ThumbnailOptions(width=80, height=80, fit="scale"), (80, 80)),
        ("pdf", "png", ThumbnailOptions(width=200), (200, 100)),
        ("mp4", "jpg", ThumbnailOptions(height=60), (80, 60)),
        ("mp4", "png", ThumbnailOptions(width=64, timestamp="00:00:00.5"), (64, 48)),
    ],
)
def test_thumbnail_has_the_asked_size(pool, tmp_path, inputs, src_fmt, out_fmt, options, size):
    dst = tmp_path / f"thumb.{out_fmt}"
    SandboxedEngine(ThumbnailEngine(), pool).convert(
        inputs[src_fmt], dst, src_fmt, out_fmt, options, lambda f: None
    )
    image = pyvips.Image.new_from_file(str(dst))
    assert (image.width, image.height) == size
    assert image.get("vips-loader").startswith(
        {"jpg": "jpeg", "png": "png", "webp": "webp"}[out_fmt]
    )


def test_thumbnail_of_a_video_past_its_end_is_an_input_error(pool, tmp_path, inputs):
    with pytest.raises(PermanentError) as info:
        SandboxedEngine(ThumbnailEngine(), pool).convert(
            inputs["mp4"],
            tmp_path / "t.png",
            "mp4",
            "png",
            ThumbnailOptions(timestamp="30"),
            lambda f: None,
        )
    assert info.value.code == "INVALID_INPUT_FILE"


def _thumbnails(pool, tmp_path, src, src_fmt, options) -> list[pyvips.Image]:
    dst = tmp_path / "thumb.png"
    made = SandboxedEngine(ThumbnailEngine(), pool).convert(
        src, dst, src_fmt, "png", options, lambda f: None
    )
    assert made is None or [p.name for p in made] == [
        f"thumb-{n}.png" for n in range(1, len(made) + 1)
    ]
    return [pyvips.Image.new_from_file(str(p)) for p in made or [dst]]


def _colour(image: pyvips.Image) -> list[float]:
    return image.getpoint(image.width // 2, image.height // 2)[:3]


def test_count_gives_the_first_pages_of_a_pdf(pool, tmp_path, inputs):
    thumbs = _thumbnails(
        pool, tmp_path, inputs["colours.pdf"], "pdf", ThumbnailOptions(width=100, count=2)
    )
    assert [(t.width, t.height) for t in thumbs] == [(100, 50), (100, 50)]
    assert [_colour(t) for t in thumbs] == [pytest.approx(RGB[c], abs=3) for c in COLOURS[:2]]


def test_count_beyond_the_last_page_gives_every_page(pool, tmp_path, inputs):
    thumbs = _thumbnails(pool, tmp_path, inputs["colours.pdf"], "pdf", ThumbnailOptions(count=9))
    assert [_colour(t) for t in thumbs] == [pytest.approx(RGB[c], abs=3) for c in COLOURS]


def test_count_spreads_frames_over_a_video(pool, tmp_path, inputs):
    thumbs = _thumbnails(
        pool, tmp_path, inputs["colours.mp4"], "mp4", ThumbnailOptions(height=60, count=3)
    )
    assert [(t.width, t.height) for t in thumbs] == [(80, 60)] * 3
    assert [_colour(t) for t in thumbs] == [pytest.approx(RGB[c], abs=12) for c in COLOURS]


def test_count_spreads_frames_after_the_timestamp(pool, tmp_path, inputs):
    thumbs = _thumbnails(
        pool, tmp_path, inputs["colours.mp4"], "mp4", ThumbnailOptions(count=2, timestamp="1")
    )
    assert [_colour(t) for t in thumbs] == [pytest.approx(RGB[c], abs=12) for c in COLOURS[1:]]


def test_count_of_an_image_gives_one_thumbnail(pool, tmp_path, inputs):
    thumbs = _thumbnails(pool, tmp_path, inputs["png"], "png", ThumbnailOptions(count=5))
    assert [(t.width, t.height) for t in thumbs] == [(400, 200)]


def test_thumbnail_routes_what_it_cannot_read_itself():
    registry = Registry(enabled_engines())
    assert thumbnail_route(registry, "png") == []
    assert [h.dst for h in thumbnail_route(registry, "docx")] == ["pdf"]
    assert [h.engine.descriptor.id for h in thumbnail_route(registry, "svg")] == ["rsvg"]
    assert thumbnail_route(registry, "mp3") is None


def _metadata(pool, tmp_path, src, fmt) -> dict:
    dst = tmp_path / "meta.json"
    SandboxedEngine(MetadataEngine(), pool).convert(
        src, dst, fmt, "json", MetadataOptions(), lambda f: None
    )
    return json.loads(dst.read_text())


def test_metadata_of_an_image(pool, tmp_path, inputs):
    meta = _metadata(pool, tmp_path, inputs["png"], "png")
    assert meta["FileType"] == "PNG"
    assert (meta["ImageWidth"], meta["ImageHeight"], meta["Bands"]) == (400, 200, 1)


def test_metadata_of_a_pdf(pool, tmp_path, inputs):
    meta = _metadata(pool, tmp_path, inputs["pdf"], "pdf")
    assert meta["PageCount"] == 2
    assert (meta["PageWidth"], meta["PageHeight"]) == (300.0, 150.0)  # 400x200 px at 96 dpi
    assert meta["PDFVersion"].startswith("1.")


def test_metadata_of_audio(pool, tmp_path, inputs):
    meta = _metadata(pool, tmp_path, inputs["wav"], "wav")
    assert meta["Duration"] == pytest.approx(1.5, abs=0.05)
    assert [s["Type"] for s in meta["Streams"]] == ["audio"]
    assert meta["Streams"][0]["SampleRate"] == 44100


def test_metadata_of_a_truncated_image_is_an_input_error(pool, tmp_path, inputs):
    bad = tmp_path / "cut.png"
    bad.write_bytes(inputs["png"].read_bytes()[:60])
    with pytest.raises(PermanentError) as info:
        _metadata(pool, tmp_path, bad, "png")
    assert info.value.code == "INVALID_INPUT_FILE"


def test_metadata_maps_a_photos_exif_to_exiftools_names(pool, tmp_path):
    """A JPEG whose EXIF a camera would write (Pillow writes it, libvips reads it): each field
    comes out under exiftool's name, with libvips' "(raw, type, n components)" tail cut."""
    from PIL import Image
    from PIL.TiffImagePlugin import IFDRational

    exif = Image.Exif()
    exif[0x010F] = "Appliance Cameras"  # Make
    exif[0x0110] = "Model 7"  # Model
    exif[0x0131] = "Firmware 1.2"  # Software
    exif[0x0132] = "2024:05:06 07:08:09"  # DateTime (ModifyDate)
    exif[0x0112] = 6  # Orientation: rotate 90 CW
    photo = exif.get_ifd(0x8769)  # the Exif sub-IFD (libvips' ifd2)
    photo[0x9003] = "2024:05:06 07:00:00"  # DateTimeOriginal
    photo[0x829A] = IFDRational(1, 250)  # ExposureTime
    photo[0x829D] = IFDRational(28, 10)  # FNumber
    photo[0x8827] = 400  # ISOSpeedRatings
    photo[0x920A] = IFDRational(35, 1)  # FocalLength
    src = tmp_path / "photo.jpg"
    Image.new("RGB", (64, 48), "gray").save(src, exif=exif)
    meta = _metadata(pool, tmp_path, src, "jpg")
    assert (meta["ImageWidth"], meta["ImageHeight"]) == (64, 48)
    assert {k: meta.get(k) for k in ("Make", "Model", "Software", "ModifyDate")} == {
        "Make": "Appliance Cameras",
        "Model": "Model 7",
        "Software": "Firmware 1.2",
        "ModifyDate": "2024:05:06 07:08:09",
    }
    assert meta["DateTimeOriginal"] == "2024:05:06 07:00:00"
    assert meta["Orientation"] == 6
    # exiftool's JSON: the exposure as a fraction, the others as numbers (they were "14/5",
    # "35/1" and "400")
    assert meta["ExposureTime"] == "1/250"
    assert (meta["FNumber"], meta["FocalLength"], meta["ISO"]) == (2.8, 35.0, 400)
