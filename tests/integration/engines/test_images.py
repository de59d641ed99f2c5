"""Real libvips conversions among every supported pair, and the options."""

from pathlib import Path

import pytest
import pyvips
from PIL import Image

from appliance.engines.formats import sniff_file
from appliance.engines.images import FORMATS, ImageEngine, ImageOptions
from appliance.errors import PermanentError

OJPEG_TIFF = Path(__file__).parents[4] / "shared" / "corpus" / "real" / "libvips-ojpeg-strip.tiff"

ENGINE = ImageEngine()


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    root = tmp_path_factory.mktemp("img")
    base = pyvips.Image.xyz(120, 80).extract_band(0).cast("uchar")
    rgb = base.bandjoin([base.flip("horizontal"), base.flip("vertical")])
    png = root / "s.png"
    rgb.write_to_file(str(png))
    out = {"png": png}
    for fmt in FORMATS:
        if fmt != "png":
            dst = root / f"s.{fmt}"
            ENGINE.convert(png, dst, "png", fmt, ImageOptions(), lambda f: None)
            out[fmt] = dst
    return out


LOSSLESS = {"png", "tiff", "bmp"}
PAIRS = sorted(ENGINE.descriptor.conversions)


def _pixels(path: Path) -> list[int]:
    """RGB values as Pillow (not libvips) decodes the file."""
    with Image.open(path) as image:
        return list(image.convert("RGB").tobytes())


@pytest.mark.parametrize(("src", "dst"), PAIRS)
def test_every_pair_converts_to_a_real_file_of_the_target_format(samples, tmp_path, src, dst):
    out = tmp_path / f"o.{dst}"
    ENGINE.convert(samples[src], out, src, dst, ImageOptions(), lambda f: None)
    assert sniff_file(out) == dst
    with Image.open(out) as image:
        assert image.size == (120, 80)
    before, after = _pixels(samples[src]), _pixels(out)
    error = sum(abs(a - b) for a, b in zip(before, after, strict=True)) / len(before)
    if src in LOSSLESS and dst in LOSSLESS:
        assert error == 0
    else:  # lossy encoders, GIF's 256 colours: the same picture all the same
        assert error < 8, error


@pytest.mark.parametrize(
    ("opts", "size"),
    [
        (ImageOptions(width=60), (60, 40)),
        (ImageOptions(height=20), (30, 20)),
        (ImageOptions(width=50, height=50, fit="crop"), (50, 50)),
        (ImageOptions(width=50, height=50, fit="scale"), (50, 50)),
        (ImageOptions(width=50, height=50, fit="max"), (50, 33)),
        (ImageOptions(width=240, fit="max"), (120, 80)),  # max never enlarges
        (ImageOptions(width=240, fit="upscale"), (240, 160)),
    ],
)
def test_resize_options_follow_cloudconvert_fit_semantics(samples, tmp_path, opts, size):
    out = tmp_path / "o.png"
    ENGINE.convert(samples["png"], out, "png", "png", opts, lambda f: None)
    img = pyvips.Image.new_from_file(str(out))
    assert (img.width, img.height) == size


def test_quality_changes_the_output_size(samples, tmp_path):
    low, high = tmp_path / "l.jpg", tmp_path / "h.jpg"
    ENGINE.convert(samples["png"], low, "png", "jpg", ImageOptions(quality=10), lambda f: None)
    ENGINE.convert(samples["png"], high, "png", "jpg", ImageOptions(quality=95), lambda f: None)
    assert low.stat().st_size < high.stat().st_size


def test_strip_removes_metadata(samples, tmp_path):
    src = tmp_path / "exif.jpg"
    img = pyvips.Image.new_from_file(str(samples["png"])).copy()
    img.set_type(pyvips.GValue.gstr_type, "exif-ifd0-Artist", "someone")
    img.write_to_file(str(src))
    kept, stripped = tmp_path / "k.jpg", tmp_path / "s.jpg"
    ENGINE.convert(src, kept, "jpg", "jpg", ImageOptions(), lambda f: None)
    ENGINE.convert(src, stripped, "jpg", "jpg", ImageOptions(strip=True), lambda f: None)
    fields = pyvips.Image.new_from_file(str(stripped)).get_fields()
    assert "exif-data" not in fields
    assert "exif-data" in pyvips.Image.new_from_file(str(kept)).get_fields()


def test_corrupt_input_is_a_permanent_error(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 100)
    with pytest.raises(PermanentError) as info:
        ENGINE.convert(bad, tmp_path / "o.jpg", "png", "jpg", ImageOptions(), lambda f: None)
    assert info.value.code == "INVALID_INPUT_FILE"


def test_a_tiff_libvips_cannot_decode_is_read_by_pillow(tmp_path):
    """Old-style JPEG in TIFF (scanners, fax software): this libvips' libtiff lacks it."""
    with pytest.raises(pyvips.Error, match="Old-style JPEG"):  # control: libvips alone fails
        pyvips.Image.new_from_file(str(OJPEG_TIFF)).avg()
    dst = tmp_path / "o.webp"
    ENGINE.convert(OJPEG_TIFF, dst, "tiff", "webp", ImageOptions(), lambda f: None)
    with Image.open(OJPEG_TIFF) as original, Image.open(dst) as made:
        assert made.format == "WEBP" and made.size == original.size == (160, 160)
        # the same picture: the mean colour within a few levels (WebP is lossy)
        mean = [sum(band.getdata()) / (160 * 160) for band in made.convert("RGB").split()]
        want = [sum(band.getdata()) / (160 * 160) for band in original.convert("RGB").split()]
        assert all(abs(a - b) < 4 for a, b in zip(mean, want, strict=True)), (mean, want)


def test_a_damaged_tiff_neither_decodes_is_a_permanent_error(tmp_path):
    bad = tmp_path / "bad.tiff"
    bad.write_bytes(OJPEG_TIFF.read_bytes()[:300])
    with pytest.raises(PermanentError) as info:
        ENGINE.convert(bad, tmp_path / "o.png", "tiff", "png", ImageOptions(), lambda f: None)
    assert info.value.code == "INVALID_INPUT_FILE"


def test_version_names_libvips():
    assert ENGINE.descriptor.version().startswith("libvips-")


def test_progress_is_reported(samples, tmp_path):
    seen = []
    ENGINE.convert(samples["png"], tmp_path / "o.webp", "png", "webp", ImageOptions(), seen.append)
    assert seen and all(0 <= f <= 1 for f in seen)
    assert Path(tmp_path / "o.webp").exists()
