"""Builders for hostile office documents, written byte by byte by the tests themselves:
zip bombs (an XML part that inflates to gigabytes), an ODT whose Basic macro runs on load, and
documents whose images are links to a remote address."""

from __future__ import annotations

import re
import struct
import zipfile
import zlib
from pathlib import Path

BLOCK = 1 << 20


def _bomb_stream(
    prefix: bytes, filler: bytes, blocks: int, suffix: bytes
) -> tuple[bytes, int, int]:
    """A raw deflate stream of prefix + filler * blocks + suffix, and its CRC-32 and size.

    After a full flush the compressor starts afresh, so every filler block compresses to the
    same bytes: it is compressed once and repeated (gigabytes in a few megabytes, quickly)."""
    first = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = first.compress(prefix) + first.flush(zlib.Z_FULL_FLUSH)
    again = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = again.compress(filler) + again.flush(zlib.Z_FULL_FLUSH)
    last = zlib.compressobj(9, zlib.DEFLATED, -15)
    tail = last.compress(suffix) + last.flush(zlib.Z_FINISH)
    crc = zlib.crc32(prefix)
    for _ in range(blocks):
        crc = zlib.crc32(filler, crc)
    crc = zlib.crc32(suffix, crc)
    size = len(prefix) + len(filler) * blocks + len(suffix)
    return head + block * blocks + tail, crc & 0xFFFFFFFF, size


def _write_zip(path: Path, members: list[tuple[str, bytes, int, int, int]]) -> None:
    """A zip of (name, raw data, method, crc, declared uncompressed size) members."""
    out = bytearray()
    central = bytearray()
    for name, data, method, crc, size in members:
        raw = name.encode()
        offset = len(out)
        out += struct.pack(
            "<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0x21, crc, len(data), size, len(raw), 0
        )
        out += raw + data
        central += struct.pack(
            "<IHHHHHHIIIHHHHHII",
            0x02014B50,
            20,
            20,
            0,
            method,
            0,
            0x21,
            crc,
            len(data),
            size,
            len(raw),
            0,
            0,
            0,
            0,
            0,
            offset,
        )
        central += raw
    eocd = struct.pack(
        "<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(central), len(out), 0
    )
    path.write_bytes(bytes(out + central + eocd))


def zip_bomb(
    base: Path, dst: Path, member: str, gigabytes: float = 2.5, declared: int | None = None
) -> Path:
    """``base`` (a real docx/xlsx/odt) with ``member`` replaced by well-formed-looking XML whose
    text content inflates to ``gigabytes``. ``declared`` makes the headers lie about its size."""
    original = zipfile.ZipFile(base)
    xml = original.read(member)
    cut = xml.index(b">", xml.index(b"<", xml.index(b"?>") + 2)) + 1  # after the root tag
    prefix = xml[:cut] + b"<!-- "
    suffix = b" -->" + xml[cut:]
    stream, crc, size = _bomb_stream(prefix, b"a" * BLOCK, int(gigabytes * 1024), suffix)
    members = []
    for info in original.infolist():
        if info.filename == member:
            members.append((member, stream, 8, crc, size if declared is None else declared))
        else:
            data = original.read(info.filename)
            packed = zlib.compressobj(6, zlib.DEFLATED, -15)
            raw = packed.compress(data) + packed.flush()
            members.append((info.filename, raw, 8, zlib.crc32(data) & 0xFFFFFFFF, len(data)))
    _write_zip(dst, members)
    return dst


NS = (
    'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
    'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
    'xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0" '
    'xmlns:svg="urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0" '
    'xmlns:script="urn:oasis:names:tc:opendocument:xmlns:script:1.0" '
    'xmlns:xlink="http://www.w3.org/1999/xlink" '
    # event names and script languages are qualified names: their prefixes must be declared
    'xmlns:ooo="http://openoffice.org/2004/office" xmlns:dom="http://www.w3.org/2001/xml-events" '
    'office:version="1.2"'
)


def _odt(dst: Path, body: str, scripts: str = "", extra: dict[str, str] | None = None) -> Path:
    files = {
        "content.xml": f'<?xml version="1.0" encoding="UTF-8"?><office:document-content {NS}>'
        f"{scripts}<office:body><office:text>{body}</office:text></office:body>"
        "</office:document-content>",
        **(extra or {}),
    }
    entries = "".join(
        f'<manifest:file-entry manifest:full-path="{name}" manifest:media-type="text/xml"/>'
        for name in files
    )
    manifest = (
        '<?xml version="1.0" encoding="UTF-8"?><manifest:manifest xmlns:manifest='
        '"urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.2">'
        '<manifest:file-entry manifest:full-path="/" '
        'manifest:media-type="application/vnd.oasis.opendocument.text"/>'
        f"{entries}</manifest:manifest>"
    )
    with zipfile.ZipFile(dst, "w") as z:
        z.writestr("mimetype", "application/vnd.oasis.opendocument.text", zipfile.ZIP_STORED)
        z.writestr("META-INF/manifest.xml", manifest, zipfile.ZIP_DEFLATED)
        for name, text in files.items():
            z.writestr(name, text, zipfile.ZIP_DEFLATED)
    return dst


def macro_odt(dst: Path, marker: str) -> Path:
    """An ODT whose Basic macro, bound to the document's load event, writes ``marker``."""
    module = (
        '<?xml version="1.0" encoding="UTF-8"?><script:module xmlns:script='
        '"http://openoffice.org/2000/script" script:name="Module1" script:language="StarBasic">'
        "Sub Main\n  Dim n As Integer\n  n = FreeFile()\n"
        f'  Open "{marker}" For Output As #n\n  Print #n, "macro ran"\n  Close #n\nEnd Sub\n'
        "</script:module>"
    )
    libraries = (
        '<?xml version="1.0" encoding="UTF-8"?><library:libraries xmlns:library='
        '"http://openoffice.org/2000/library" xmlns:xlink="http://www.w3.org/1999/xlink">'
        '<library:library library:name="Standard" library:link="false"/></library:libraries>'
    )
    library = (
        '<?xml version="1.0" encoding="UTF-8"?><library:library xmlns:library='
        '"http://openoffice.org/2000/library" library:name="Standard" library:readonly="false"'
        ' library:passwordprotected="false"><library:element library:name="Module1"/>'
        "</library:library>"
    )
    scripts = (
        "<office:scripts><office:event-listeners><script:event-listener "
        'script:language="ooo:script" script:event-name="dom:load" xlink:type="simple" '
        'xlink:href="vnd.sun.star.script:Standard.Module1.Main?language=Basic&amp;'
        'location=document"/></office:event-listeners></office:scripts>'
    )
    return _odt(
        dst,
        "<text:p>A document with a macro.</text:p>",
        scripts,
        {
            "Basic/script-lc.xml": libraries,
            "Basic/Standard/script-lb.xml": library,
            "Basic/Standard/Module1.xml": module,
        },
    )


def remote_image_odt(dst: Path, url: str) -> Path:
    frame = (
        '<text:p>Linked picture: <draw:frame draw:name="pic" svg:width="2cm" svg:height="2cm" '
        'text:anchor-type="as-char"><draw:image xlink:type="simple" xlink:show="embed" '
        f'xlink:actuate="onLoad" xlink:href="{url}"/></draw:frame></text:p>'
    )
    return _odt(dst, frame)


def remote_image_docx(with_image: Path, dst: Path, url: str) -> Path:
    """A docx (made by pandoc with an embedded picture) whose picture is turned into a link
    to ``url`` (an external relationship, ``r:link`` instead of ``r:embed``)."""
    with zipfile.ZipFile(with_image) as src, zipfile.ZipFile(dst, "w") as out:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename == "word/_rels/document.xml.rels":
                data = re.sub(
                    rb'Target="media/[^"]+"',
                    f'Target="{url}" TargetMode="External"'.encode(),
                    data,
                )
            elif info.filename == "word/document.xml":
                data = data.replace(b"r:embed=", b"r:link=")
            elif info.filename.startswith("word/media/"):
                continue
            out.writestr(info, data)
    return dst
