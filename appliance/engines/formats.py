"""Content-based file type checks: what a file is comes from its first bytes, not its name."""

from __future__ import annotations

from pathlib import Path

# Aliases clients use for the same format.
ALIASES = {"jpeg": "jpg", "tif": "tiff", "jpe": "jpg", "jfif": "jpg"}


def normalize(fmt: str) -> str:
    fmt = fmt.strip().lower().lstrip(".")
    return ALIASES.get(fmt, fmt)


def _ftyp_brand(head: bytes) -> bytes | None:
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return head[8:12]
    return None


def sniff(head: bytes) -> str | None:
    """The format the leading bytes (>= 32 of them) show, or None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head[:2] == b"BM" and len(head) >= 26:
        return "bmp"
    brand = _ftyp_brand(head)
    if brand in (b"avif", b"avis"):
        return "avif"
    if brand in (b"heic", b"heix", b"mif1", b"msf1", b"hevc", b"heim", b"heis"):
        return "heic"
    if head.startswith(b"%PDF-"):
        return "pdf"
    return None


def sniff_file(path: Path) -> str | None:
    with open(path, "rb") as fh:
        return sniff(fh.read(64))


def matches(declared: str, detected: str | None) -> bool:
    return detected is not None and normalize(declared) == detected
