"""Content-based file type checks: what a file is comes from its bytes, not its name.

Binary formats are recognised by their leading bytes; formats sharing a container (docx/odt/
epub are zip files, mp4/m4a/mov are ISO media files, webm/mkv are Matroska, ogg/opus are Ogg)
are accepted for each other here and told apart by the engine that opens them. Text formats
(md, html, svg, ...) have no signature: they must be text (UTF-8, or UTF-16/32 with its
byte-order mark; no NUL characters) and not a known binary format (UTF-16's marks are read
before MPEG audio's frame headers, which FF FE also matches); SVG must contain an <svg
element; json must open with [ or {, jsonl with {, xml with <. Parquet is recognised by its
PAR1 signature.
"""

from __future__ import annotations

from pathlib import Path

from appliance.errors import PermanentError

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
# Byte-order marks and the codec each names (Python's codecs drop the mark as they decode).
# UTF-32LE's mark starts with UTF-16LE's: the longer one is looked for first.
BOMS = (
    (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xef\xbb\xbf", "utf-8-sig"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)


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


def text_codec(data: bytes) -> str | None:
    """The codec ``data`` (a file's first bytes) is text in: the one its byte-order mark names,
    else UTF-8; None if it is not text (it does not decode, or holds a NUL character)."""
    codec = next((name for mark, name in BOMS if data.startswith(mark)), "utf-8")
    unit = {"utf-16": 2, "utf-32": 4}.get(codec, 1)
    data = data[: len(data) - len(data) % unit]  # the probe may end inside a code unit
    try:
        text = data.decode(codec)
    except UnicodeDecodeError as exc:
        if exc.start < len(data) - 3:  # a character cut at the probe's end is fine
            return None
        text = data[: exc.start].decode(codec)
    return None if "\x00" in text else codec


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
    return _mpeg_audio(head) or _ftyp(head)


def _mpeg_audio(head: bytes) -> str | None:
    """An MPEG audio frame without a tag (ADTS, mp3), unless the bytes are text with a UTF-16
    byte-order mark (FF FE is a frame header too)."""
    if len(head) < 2 or head[0] != 0xFF or (head[1] == 0xFE and text_codec(head)):
        return None
    if head[1] & 0xF6 == 0xF0:
        return "aac"  # ADTS
    if head[1] & 0xE0 == 0xE0 and head[1] & 0x06:
        return "mp3"
    return None


def sniff_file(path: Path) -> str | None:
    with open(path, "rb") as fh:
        return sniff(fh.read(HEAD_BYTES))


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
        codec = text_codec(data)
        if codec is None:
            return "binary"
        return _text_mismatch(declared, _decoded(data, codec))
    if detected is None:
        return "unrecognised"
    if detected == declared or GROUPS.get(detected, detected) == GROUPS.get(declared, declared):
        return None
    return detected


def _decoded(data: bytes, codec: str) -> str:
    unit = {"utf-16": 2, "utf-32": 4}.get(codec, 1)
    return data[: len(data) - len(data) % unit].decode(codec, "ignore")


def _text_mismatch(declared: str, text: str) -> str | None:
    """What a text of the ``declared`` format lacks, if anything."""
    if declared == "svg" and "<svg" not in text.lower():
        return "text without an <svg> element"
    opener = TEXT_OPENERS.get(declared)
    first = text.lstrip()[:1]
    if opener is not None and (not first or first.encode() not in opener):
        return f"text starting with {first!r}"
    return None


def matches(declared: str, detected: str | None) -> bool:
    return detected is not None and normalize(declared) == detected


def as_utf8(src: Path, dst: Path) -> Path:
    """``src`` when it is UTF-8 text (with or without a mark), else ``dst``: the same text
    written as UTF-8 without a mark, for engines that read only UTF-8 (pandoc, the csv and
    json readers). The content check already found it to be text."""
    with open(src, "rb") as fh:
        codec = text_codec(fh.read(TEXT_PROBE_BYTES))
    if codec in (None, "utf-8", "utf-8-sig"):
        return src
    try:
        with (
            open(src, encoding=codec, newline="") as inp,
            open(dst, "w", encoding="utf-8", newline="") as out,
        ):
            while chunk := inp.read(1 << 20):
                out.write(chunk)
    except UnicodeError as exc:
        raise PermanentError(
            f"The file is not valid {codec.upper()} text past its start", code="INVALID_INPUT_FILE"
        ) from exc
    return dst
