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
