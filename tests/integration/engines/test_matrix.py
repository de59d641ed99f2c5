"""Every advertised direct pair of the CLI engines (rsvg, pandoc, ffmpeg, tesseract, and
tesseract with pandoc) converts a small input made here, and the output is checked by opening
it (ffprobe for media, zip members or text for documents, a PDF page object, the words OCR read
back), not only by its signature.
Run through the sandboxed helper, as workers run them."""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

import pytest
import pyvips
from PIL import Image

from appliance.engines.formats import mismatch
from appliance.engines.markup import WRITERS, MarkupOptions, PandocEngine
from appliance.engines.media import AUDIO, VIDEO, FfmpegEngine, MediaOptions
from appliance.engines.ocr import OcrEngine, OcrOptions, PictureDocumentEngine
from appliance.engines.sandbox import HelperPool, Limits, SandboxedEngine
from appliance.engines.vector import SvgEngine, SvgOptions
from appliance.errors import PermanentError
from tests.integration.engines.corpus import CORPUS

SENTENCE = "Conversion matrix sentence"
SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="120" height="80">'
    '<rect width="120" height="80" fill="#c33"/><circle cx="60" cy="40" r="30"/></svg>'
)


def _convert(engine, pool, src, dst, src_fmt, dst_fmt, options):
    SandboxedEngine(engine, pool).convert(src, dst, src_fmt, dst_fmt, options, lambda f: None)
    assert dst.stat().st_size > 0
    assert mismatch(dst_fmt, dst) is None


# -- svg --------------------------------------------------------------------------------------
@pytest.mark.parametrize("target", ["png", "pdf"])
def test_svg_renders(pool, tmp_path, target):
    src = tmp_path / "in.svg"
    src.write_text(SVG)
    dst = tmp_path / f"out.{target}"
    _convert(SvgEngine(), pool, src, dst, "svg", target, SvgOptions(width=240))
    if target == "png":
        img = pyvips.Image.new_from_file(str(dst))
        assert (img.width, img.height) == (240, 160)
    else:
        assert (
            dst.read_bytes().count(b"/Type /Page\n")
            + dst.read_bytes().count(b"/Type /Page ")
            + dst.read_bytes().count(b"/Type/Page")
            >= 1
        )


# -- markup -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def markup_samples(tmp_path_factory):
    root = tmp_path_factory.mktemp("markup")
    md = root / "sample.md"
    md.write_text(f"# Heading\n\n{SENTENCE} with *emphasis*.\n\n- one\n- two\n")
    samples = {"md": md, "txt": md}
    for fmt, writer in WRITERS.items():
        if fmt in ("md", "txt"):
            continue
        out = root / f"sample.{fmt}"
        subprocess.run(
            ["pandoc", "-f", "markdown", "-t", writer, "-s", "-o", str(out), str(md)], check=True
        )
        samples[fmt] = out
    return samples


def _text_of(path: Path, fmt: str) -> str:
    if fmt in ("docx", "odt", "epub"):
        with zipfile.ZipFile(path) as z:
            member = {"docx": "word/document.xml", "odt": "content.xml"}.get(fmt)
            names = [member] if member else [n for n in z.namelist() if n.endswith(".xhtml")]
            return " ".join(z.read(n).decode() for n in names)
    return path.read_text()


@pytest.mark.parametrize(("src_fmt", "dst_fmt"), sorted(PandocEngine.descriptor.conversions))
def test_markup_pair_keeps_the_text(pool, tmp_path, markup_samples, src_fmt, dst_fmt):
    dst = tmp_path / f"out.{dst_fmt}"
    _convert(PandocEngine(), pool, markup_samples[src_fmt], dst, src_fmt, dst_fmt, MarkupOptions())
    assert "Conversion matrix" in _text_of(dst, dst_fmt)


# -- media ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def media_samples(tmp_path_factory):
    root = tmp_path_factory.mktemp("media")
    samples = {}
    wav = root / "s.wav"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=1", str(wav)],
        check=True,
    )
    samples["wav"] = wav
    video = root / "s.mp4"
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=160x120:rate=10",
            "-f",
            "lavfi",
            "-i",
            "sine=duration=1",
            "-t",
            "1",
            "-pix_fmt",
            "yuv420p",
            "-shortest",
            str(video),
        ],
        check=True,
    )
    samples["mp4"] = video
    engine = FfmpegEngine()
    for fmt in AUDIO:
        if fmt != "wav":
            samples[fmt] = root / f"s.{fmt}"
            engine.convert(wav, samples[fmt], "wav", fmt, MediaOptions(), lambda f: None)
    for fmt in VIDEO:
        if fmt not in ("mp4", "gif"):
            samples[fmt] = root / f"s.{fmt}"
            engine.convert(video, samples[fmt], "mp4", fmt, MediaOptions(), lambda f: None)
    return samples


def _probe(path: Path) -> dict:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
        capture_output=True,
        check=True,
        text=True,
    )
    return json.loads(out.stdout)


MEDIA_PAIRS = sorted(p for p in FfmpegEngine.descriptor.conversions)


@pytest.mark.parametrize(("src_fmt", "dst_fmt"), MEDIA_PAIRS)
def test_media_pair_produces_playable_output(pool, tmp_path, media_samples, src_fmt, dst_fmt):
    dst = tmp_path / f"out.{dst_fmt}"
    _convert(
        FfmpegEngine(),
        pool,
        media_samples[src_fmt],
        dst,
        src_fmt,
        dst_fmt,
        MediaOptions(width=80) if dst_fmt in VIDEO else MediaOptions(),
    )
    info = _probe(dst)
    kinds = {s["codec_type"] for s in info["streams"]}
    if dst_fmt in AUDIO:
        assert kinds == {"audio"}
        assert 0.5 < float(info["format"]["duration"]) < 1.6
    else:
        assert "video" in kinds
        video = next(s for s in info["streams"] if s["codec_type"] == "video")
        assert video["width"] == 80


def test_media_progress_is_reported(tmp_path, media_samples):
    seen = []
    FfmpegEngine().convert(
        media_samples["mp4"], tmp_path / "o.webm", "mp4", "webm", MediaOptions(), seen.append
    )
    assert seen and max(seen) > 0.5


# -- ocr --------------------------------------------------------------------------------------
OCR_WORDS = "Quick brown foxes jump over lazy dogs"


def text_image(words: str) -> pyvips.Image:
    """Black words on white, 24 pt at 300 dpi (about 100 px high), with a margin."""
    ink = pyvips.Image.text(words, dpi=300, font="sans 24")
    page = (255 - ink).cast("uchar")
    return page.embed(60, 60, page.width + 120, page.height + 120, extend="white")


@pytest.fixture(scope="module")
def ocr_samples(tmp_path_factory):
    root = tmp_path_factory.mktemp("ocr")
    image = text_image(OCR_WORDS)
    samples = {}
    for fmt in ("png", "jpg", "tiff", "webp", "gif"):
        samples[fmt] = root / f"words.{fmt}"
        image.write_to_file(str(samples[fmt]))
    samples["bmp"] = root / "words.bmp"  # this libvips has no BMP saver: Pillow writes it
    Image.open(samples["png"]).save(samples["bmp"], format="BMP")
    return samples


@pytest.mark.parametrize(("src_fmt", "dst_fmt"), sorted(OcrEngine.descriptor.conversions))
def test_ocr_pair_reads_the_words_back(pool, tmp_path, ocr_samples, src_fmt, dst_fmt):
    dst = tmp_path / f"out.{dst_fmt}"
    _convert(OcrEngine(), pool, ocr_samples[src_fmt], dst, src_fmt, dst_fmt, OcrOptions())
    assert dst.read_text().split() == OCR_WORDS.split()


@pytest.mark.parametrize(
    ("src_fmt", "dst_fmt"), sorted(PictureDocumentEngine.descriptor.conversions)
)
def test_picture_document_pair_holds_the_words(pool, tmp_path, ocr_samples, src_fmt, dst_fmt):
    dst = tmp_path / f"out.{dst_fmt}"
    engine = PictureDocumentEngine()
    _convert(engine, pool, ocr_samples[src_fmt], dst, src_fmt, dst_fmt, OcrOptions())
    read = ["pandoc", "--from", dst_fmt, "--to", "plain", str(dst)]  # an independent reader
    text = subprocess.run(read, capture_output=True, text=True, check=True).stdout
    assert " ".join(OCR_WORDS.split()) in " ".join(text.split())


def test_utf16_html_with_a_byte_order_mark_keeps_its_text(pool, tmp_path):
    page = '<html><head><meta charset="utf-16"></head><body><p>Grüße aus 東京</p></body></html>'
    src = tmp_path / "page.html"
    src.write_bytes(b"\xff\xfe" + page.encode("utf-16-le"))
    assert mismatch("html", src) is None  # was "mp3": FF FE is an MPEG frame header too
    dst = tmp_path / "page.txt"
    _convert(PandocEngine(), pool, src, dst, "html", "txt", MarkupOptions())
    assert dst.read_text(encoding="utf-8").strip() == "Grüße aus 東京"


def test_text_in_a_docx_text_box_reaches_the_text(pool, tmp_path):
    """pandoc's own test file, whose text is all in text boxes (pandoc 2.17 dropped it)."""
    src = CORPUS / "pandoc-text_in_shape_format.docx"
    dst = tmp_path / "shapes.txt"
    _convert(PandocEngine(), pool, src, dst, "docx", "txt", MarkupOptions())
    text = " ".join(dst.read_text().split())
    assert "Valter Kiisk" in text
    assert "Institute of Physics, University of Tartu" in text
    assert text.count("Valter Kiisk") == 1  # Word's fallback copy of the box is not read again


def test_pandoc_out_of_memory_is_an_engine_limit(work_root, tmp_path):
    """Markdown pandoc needs well over 400 MB for, in a helper allowed 400 MB of data."""
    src = tmp_path / "big.md"
    with open(src, "w") as fh:
        for n in range(200_000):
            fh.write(f"Paragraph {n} with *some* words " + "word " * 40 + "\n\n")
    pool = HelperPool(
        work_root / "small-memory", Limits(timeout_seconds=120, memory_bytes=400 << 20)
    )
    try:
        with pytest.raises(PermanentError) as info:
            SandboxedEngine(PandocEngine(), pool).convert(
                src, tmp_path / "big.docx", "md", "docx", MarkupOptions(), lambda f: None
            )
    finally:
        pool.close()
    assert info.value.code == "ENGINE_LIMIT", info.value.message
