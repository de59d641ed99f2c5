import pytest

from appliance.engines.formats import as_utf8, matches, mismatch, normalize, sniff
from appliance.errors import PermanentError


@pytest.mark.parametrize(
    ("head", "fmt"),
    [
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 24, "png"),
        (b"\xff\xd8\xff\xe0" + b"\0" * 28, "jpg"),
        (b"RIFF\0\0\0\0WEBPVP8 " + b"\0" * 16, "webp"),
        (b"GIF89a" + b"\0" * 26, "gif"),
        (b"II*\x00" + b"\0" * 28, "tiff"),
        (b"BM" + b"\0" * 30, "bmp"),
        (b"\0\0\0\x1cftypavif" + b"\0" * 20, "avif"),
        (b"%PDF-1.7\n" + b"\0" * 23, "pdf"),
        (b"hello world, not an image at all", None),
    ],
)
def test_sniff_reads_the_content_not_the_name(head, fmt):
    assert sniff(head) == fmt


def test_aliases_normalize():
    assert normalize(".JPEG") == "jpg" and normalize("tif") == "tiff"
    assert matches("jpeg", "jpg") and not matches("png", None)


def test_data_formats_are_checked_by_content(tmp_path):
    cases = {
        "data.json": (b'\xef\xbb\xbf  [{"a": 1}]', "json", None),
        "list.jsonl": (b'{"a": 1}\n', "jsonl", None),
        "rows.xml": (b"\n<?xml version='1.0'?><r/>", "xml", None),
        "table.parquet": (b"PAR1" + b"\0" * 60, "parquet", None),
        "nope.json": (b"id,name\n1,a\n", "json", "text starting with 'i'"),
        "nope.xml": (b"a: 1\n", "xml", "text starting with 'a'"),
        "fake.csv": (b"PAR1" + b"\0" * 60, "csv", "parquet"),
        "fake.parquet": (b"id,name\n", "parquet", "unrecognised"),
    }
    for name, (content, fmt, seen) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        assert mismatch(fmt, path) == seen, name
    assert normalize("yml") == "yaml" and normalize("ndjson") == "jsonl"


HTML = (
    '<!DOCTYPE html><html><head><meta charset="utf-16"></head><body><p>Grüße 日本</p></body></html>'
)


@pytest.mark.parametrize(
    ("mark", "codec"),
    [
        (b"\xff\xfe", "utf-16-le"),
        (b"\xfe\xff", "utf-16-be"),
        (b"\xff\xfe\x00\x00", "utf-32-le"),
        (b"\x00\x00\xfe\xff", "utf-32-be"),
        (b"\xef\xbb\xbf", "utf-8"),
    ],
)
def test_text_with_a_byte_order_mark_is_text_not_mp3(tmp_path, mark, codec):
    path = tmp_path / "page.html"
    path.write_bytes(mark + HTML.encode(codec))
    assert sniff(path.read_bytes()[:68]) is None
    assert mismatch("html", path) is None
    assert mismatch("mp3", path) == "unrecognised"
    out = as_utf8(path, tmp_path / "utf8.html")
    assert out.read_text(encoding="utf-8").removeprefix("\ufeff") == HTML


def test_an_mpeg_frame_is_still_mp3_and_not_text(tmp_path):
    frame = b"\xff\xfb\x90\x64" + bytes(range(64))
    assert sniff(frame) == "mp3"
    path = tmp_path / "fake.html"
    path.write_bytes(frame)
    assert mismatch("html", path) == "mp3"


def test_a_cut_utf16_probe_still_reads_as_text(tmp_path):
    path = tmp_path / "long.md"
    text = "é" * 40000 + "\n"  # longer than the probe, which may end inside a code unit
    path.write_bytes(b"\xff\xfe" + text.encode("utf-16-le") + b"x")
    assert mismatch("md", path) is None


def test_utf16_json_is_checked_by_its_first_character(tmp_path):
    path = tmp_path / "data.json"
    path.write_bytes(b"\xff\xfe" + ' [{"a": 1}]'.encode("utf-16-le"))
    assert mismatch("json", path) is None
    path.write_bytes(b"\xff\xfe" + "a: 1".encode("utf-16-le"))
    assert mismatch("json", path) == "text starting with 'a'"


def test_broken_utf16_is_an_invalid_input(tmp_path):
    path = tmp_path / "broken.txt"
    # text for longer than the content check's probe, then lone surrogates
    path.write_bytes(b"\xff\xfe" + ("ok" * 40000).encode("utf-16-le") + b"\x00\xd8" * 4)
    with pytest.raises(PermanentError) as raised:
        as_utf8(path, tmp_path / "out.txt")
    assert raised.value.code == "INVALID_INPUT_FILE"
