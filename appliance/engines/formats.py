"""Content-based file type checks: what a file is comes from its bytes, not its name.

Binary formats are recognised by their leading bytes; formats sharing a container (docx/odt/
epub are zip files, mp4/m4a/mov are ISO media files, webm/mkv are Matroska, ogg/opus are Ogg)
are accepted for each other here and told apart by the engine that opens them. Text formats
(md, html, svg, ...) have no signature: they must be text (UTF-8, no NUL bytes) and not a
known binary format; SVG must contain an <svg element; json must open with [ or {, jsonl
with {, xml with <. Parquet is recognised by its PAR1 signature.
"""

from __future__ import annotations

from pathlib import Path

# Aliases clients use for the same format.
ALIASES = {
    "jpeg": "jpg",
    "tif": "tiff",
    "jpe": "jpg",
    "jfif": "jpg",
    "markdown": "md",
    "htm": "html",
    "tex": "latex",
    "text": "txt",
    "mpeg4": "mp4",
    "oga": "ogg",
    "yml": "yaml",
    "ndjson": "jsonl",
    "tab": "tsv",
}
TEXT = frozenset(
    {"md", "gfm", "html", "rst", "latex", "org", "txt", "svg", "csv", "tsv", "json", "jsonl"}
    | {"yaml", "xml", "fb2"}
)
# Text formats whose first non-blank character is fixed.
TEXT_OPENERS = {"json": b"[{", "jsonl": b"{", "xml": b"<"}
GROUPS = {
    **dict.fromkeys(("zip", "docx", "odt", "epub", "xlsx", "pptx", "ods", "odp"), "zip"),
    **dict.fromkeys(("mp4", "m4a", "mov"), "isobmff"),
    **dict.fromkeys(("webm", "mkv"), "matroska"),
    **dict.fromkeys(("ogg", "opus"), "ogg"),
    **dict.fromkeys(("ole", "doc", "xls", "ppt"), "ole"),  # MS Office 97 compound files
    **dict.fromkeys(("mobi", "azw3"), "mobi"),  # Palm database of type BOOKMOBI
}
HEAD_BYTES = 68  # a Palm database (mobi, azw3) names its type at bytes 60-67
TEXT_PROBE_BYTES = 64 * 1024


def normalize(fmt: str) -> str:
    fmt = fmt.strip().lower().lstrip(".")
    return ALIASES.get(fmt, fmt)


def _ftyp(head: bytes) -> str | None:
    if len(head) < 12 or head[4:8] != b"ftyp":
        return None
    brand = head[8:12]
    if brand in (b"avif", b"avis"):
        return "avif"
    if brand in (b"heic", b"heix", b"mif1", b"msf1", b"hevc", b"heim", b"heis"):
        return "heic"
    if brand == b"M4A ":
        return "m4a"
    if brand == b"qt  ":
        return "mov"
    return "mp4"


def sniff(head: bytes) -> str | None:
    """The binary format the leading bytes (HEAD_BYTES of them if the file has them) show."""
    signatures = (
        (b"\x89PNG\r\n\x1a\n", "png"),
        (b"\xff\xd8\xff", "jpg"),
        (b"GIF87a", "gif"),
        (b"GIF89a", "gif"),
        (b"II*\x00", "tiff"),
        (b"MM\x00*", "tiff"),
        (b"II+\x00", "tiff"),
        (b"MM\x00+", "tiff"),
        (b"%PDF-", "pdf"),
        (b"fLaC", "flac"),
        (b"ID3", "mp3"),
        (b"PK\x03\x04", "zip"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "ole"),
        (b"{\\rtf", "rtf"),
        (b"PAR1", "parquet"),
    )
    for magic, fmt in signatures:
        if head.startswith(magic):
            return fmt
    if head[60:68] == b"BOOKMOBI":
        return "mobi"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"OggS":
        return "opus" if b"OpusHead" in head else "ogg"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "webm" if b"webm" in head else "mkv"
    if head[:2] == b"BM" and len(head) >= 26:
        return "bmp"
    if len(head) >= 2 and head[0] == 0xFF:
        if head[1] & 0xF6 == 0xF0:
            return "aac"  # ADTS
        if head[1] & 0xE0 == 0xE0 and head[1] & 0x06:
            return "mp3"  # MPEG audio frame without an ID3 tag
    return _ftyp(head)


def sniff_file(path: Path) -> str | None:
    with open(path, "rb") as fh:
        return sniff(fh.read(HEAD_BYTES))


def _looks_like_text(data: bytes) -> bool:
    if b"\x00" in data:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(data) - 3  # a character cut at the probe's end is fine
    return True


def mismatch(declared: str, path: Path) -> str | None:
    """None if the content fits ``declared``; otherwise what the content looks like."""
    declared = normalize(declared)
    with open(path, "rb") as fh:
        data = fh.read(TEXT_PROBE_BYTES if declared in TEXT else HEAD_BYTES)
    if not data:
        return "empty"
    detected = sniff(data[:HEAD_BYTES])
    if declared in TEXT:
        if detected is not None:
            return detected
        if not _looks_like_text(data):
            return "binary"
        if declared == "svg" and b"<svg" not in data.lower():
            return "text without an <svg> element"
        opener = TEXT_OPENERS.get(declared)
        first = data.removeprefix(b"\xef\xbb\xbf").lstrip()[:1]
        if opener is not None and (not first or first not in opener):
            return f"text starting with {first.decode('utf-8', 'replace')!r}"
        return None
    if detected is None:
        return "unrecognised"
    if detected == declared or GROUPS.get(detected, detected) == GROUPS.get(declared, declared):
        return None
    return detected


def matches(declared: str, detected: str | None) -> bool:
    return detected is not None and normalize(declared) == detected
