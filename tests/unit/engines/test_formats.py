import pytest

from appliance.engines.formats import matches, normalize, sniff


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
    from appliance.engines.formats import mismatch

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
