"""Builders for hostile office documents, written byte by byte by the tests themselves:
zip bombs (an XML part that inflates to gigabytes), an ODT whose Basic macro runs on load, a
DOCM with a VBA macro (its VBA project written from the MS-CFB and MS-OVBA specifications),
and documents whose images are links to a remote address."""

from __future__ import annotations

import itertools
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


# --- a Word document with a VBA macro (docm) ---
# The VBA project (word/vbaProject.bin) is a compound file (MS-CFB) holding the project's text
# description (PROJECT), its binary one (VBA/dir, compressed as MS-OVBA says) and each module's
# compressed source. Written here from the specifications, with only what readers need.

FREESECT, ENDOFCHAIN, FATSECT, NOSTREAM = 0xFFFFFFFF, 0xFFFFFFFE, 0xFFFFFFFD, 0xFFFFFFFF
SECTOR, MINI_SECTOR, MINI_CUTOFF = 512, 64, 4096


def _ovba_compress(data: bytes) -> bytes:
    """An MS-OVBA compressed container of one chunk of literal tokens only (no copies): a flag
    byte of zeros before every eight bytes. Valid, if not small; enough for short sources."""
    tokens = b"".join(b"\x00" + data[i : i + 8] for i in range(0, len(data), 8))
    assert len(tokens) <= 4096, "one chunk only"
    header = 0xB000 | (len(tokens) + 2 - 3)  # compressed flag, signature 0b011, size - 3
    return b"\x01" + struct.pack("<H", header) + tokens


def _record(record_id: int, data: bytes) -> bytes:
    return struct.pack("<HI", record_id, len(data)) + data


def _vba_dir(modules: list[str]) -> bytes:
    """The dir stream (MS-OVBA 2.3.4.2): project information, no references, the modules."""
    out = (
        _record(0x01, struct.pack("<I", 1))  # SYSKIND: 32-bit Windows
        + _record(0x02, struct.pack("<I", 0x409))  # LCID
        + _record(0x14, struct.pack("<I", 0x409))  # LCIDINVOKE
        + _record(0x03, struct.pack("<H", 1252))  # CODEPAGE
        + _record(0x04, b"Project")  # NAME
        + _record(0x05, b"")  # DOCSTRING
        + _record(0x40, b"")  # ... its Unicode form
        + _record(0x06, b"")  # HELPFILEPATH
        + _record(0x3D, b"")  # ... its second form
        + _record(0x07, struct.pack("<I", 0))  # HELPCONTEXT
        + _record(0x08, struct.pack("<I", 0))  # LIBFLAGS
        + struct.pack("<HIIH", 0x09, 4, 1, 0)  # VERSION (its size field says 4, it has 6)
        + _record(0x0C, b"")  # CONSTANTS
        + _record(0x3C, b"")  # ... their Unicode form
        + _record(0x0F, struct.pack("<H", len(modules)))  # MODULES: count
        + _record(0x13, struct.pack("<H", 0xFFFF))  # PROJECTCOOKIE
    )
    for name in modules:
        ascii_name, unicode_name = name.encode("ascii"), name.encode("utf-16-le")
        out += (
            _record(0x19, ascii_name)  # MODULENAME
            + _record(0x47, unicode_name)  # MODULENAMEUNICODE
            + _record(0x1A, ascii_name)  # MODULESTREAMNAME
            + _record(0x32, unicode_name)  # ... its Unicode form
            + _record(0x1C, b"")  # MODULEDOCSTRING
            + _record(0x48, b"")  # ... its Unicode form
            + _record(0x31, struct.pack("<I", 0))  # MODULEOFFSET: the source starts the stream
            + _record(0x1E, struct.pack("<I", 0))  # MODULEHELPCONTEXT
            + _record(0x2C, struct.pack("<H", 0xFFFF))  # MODULECOOKIE
            + _record(0x21, b"")  # MODULETYPE: procedural (a standard module)
            + _record(0x2B, b"")  # module terminator
        )
    return out + _record(0x10, b"")  # dir terminator


DIR_ENTRY = "<64sHBBIII16sIQQIQ"  # name, its length, type, colour, left, right, child, ...
STORAGE, STREAM, ROOT = 1, 2, 5


def _cfb_tree(streams: dict[str, bytes]) -> list[dict]:
    """Directory entries (root first) for ``streams`` ("STORAGE/NAME" paths), with their
    storages; each knows its children."""
    entries: list[dict] = [{"name": "Root Entry", "type": ROOT, "children": []}]
    index = {"": 0}
    for path, data in streams.items():
        *storages, name = path.split("/")
        parent = ""
        for part in storages:
            here = f"{parent}/{part}".strip("/")
            if here not in index:
                index[here] = len(entries)
                entries.append({"name": part, "type": STORAGE, "children": []})
                entries[index[parent]]["children"].append(index[here])
            parent = here
        entries[index[parent]]["children"].append(len(entries))
        entries.append({"name": name, "type": STREAM, "data": data, "children": []})
    return entries


def _mini_stream(entries: list[dict]) -> tuple[bytes, list[int]]:
    """Every stream (each under the 4 KiB cutoff) in 64-byte mini sectors, and the mini FAT;
    each stream entry gets its first mini sector and size."""
    mini, minifat = bytearray(), []
    for entry in (e for e in entries if e["type"] == STREAM):
        assert len(entry["data"]) < MINI_CUTOFF
        entry["start"], entry["size"] = len(mini) // MINI_SECTOR, len(entry["data"])
        count = max(1, -(-entry["size"] // MINI_SECTOR))
        minifat += [entry["start"] + k + 1 for k in range(count - 1)] + [ENDOFCHAIN]
        mini += entry["data"].ljust(count * MINI_SECTOR, b"\x00")
    return bytes(mini), minifat


def _directory(entries: list[dict]) -> bytes:
    """Siblings chained to the right in the specification's order (length, then upper case);
    all black: readers follow the links, they do not check the colours."""
    for entry in entries:
        children = sorted(
            entry["children"], key=lambda i: (len(entries[i]["name"]), entries[i]["name"].upper())
        )
        entry["child"] = children[0] if children else NOSTREAM
        for left, right in itertools.pairwise(children):
            entries[left]["right"] = right
    out = bytearray()
    for entry in entries:
        name = entry["name"].encode("utf-16-le") + b"\x00\x00"
        out += struct.pack(
            DIR_ENTRY,
            *(name, len(name), entry["type"], 1, NOSTREAM, entry.get("right", NOSTREAM)),
            *(entry["child"], b"", 0, 0, 0, entry.get("start", 0), entry.get("size", 0)),
        )
    empty = struct.pack(DIR_ENTRY, b"", 0, 0, 0, NOSTREAM, NOSTREAM, NOSTREAM, b"", 0, 0, 0, 0, 0)
    while len(out) % SECTOR:
        out += empty
    return bytes(out)


def _chain(first: int, count: int) -> list[int]:
    return [first + k + 1 for k in range(count - 1)] + [ENDOFCHAIN]


def _cfb(streams: dict[str, bytes]) -> bytes:
    """A version 3 compound file (MS-CFB) of small ``streams``. Sectors in order: the FAT, the
    directory, the mini FAT, the mini stream (the root entry's data)."""
    entries = _cfb_tree(streams)
    mini, minifat = _mini_stream(entries)
    mini_sectors, minifat_sectors = -(-len(mini) // SECTOR), -(-len(minifat) * 4 // SECTOR)
    dir_sectors = -(-len(entries) * 128 // SECTOR)
    fat_sectors = 1
    while fat_sectors * SECTOR // 4 < fat_sectors + dir_sectors + minifat_sectors + mini_sectors:
        fat_sectors += 1
    first_minifat = fat_sectors + dir_sectors
    first_mini = first_minifat + minifat_sectors
    entries[0]["start"], entries[0]["size"] = first_mini, len(mini)
    fat = [FATSECT] * fat_sectors + _chain(fat_sectors, dir_sectors)
    fat += _chain(first_minifat, minifat_sectors) + _chain(first_mini, mini_sectors)
    fat += [FREESECT] * (fat_sectors * SECTOR // 4 - len(fat))
    header = struct.pack(
        "<8s16sHHHHH6sIIIIIIIII",
        *(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", b"", 0x3E, 3, 0xFFFE, 9, 6, b""),
        *(0, fat_sectors, fat_sectors, 0, MINI_CUTOFF, first_minifat, minifat_sectors),
        *(ENDOFCHAIN, 0),  # no DIFAT sectors: the header's 109 entries list the FAT
    ) + struct.pack("<109I", *range(fat_sectors), *[FREESECT] * (109 - fat_sectors))
    return (
        header
        + struct.pack(f"<{len(fat)}I", *fat)
        + _directory(entries)
        + struct.pack(f"<{len(minifat)}I", *minifat).ljust(minifat_sectors * SECTOR, b"\xff")
        + mini.ljust(mini_sectors * SECTOR, b"\x00")
    )


def vba_project(module: str, source: str) -> bytes:
    """vbaProject.bin with one standard module ``module`` of VBA ``source``."""
    code = f'Attribute VB_Name = "{module}"\r\n' + source.replace("\n", "\r\n")
    project = (
        'ID="{00000000-0000-0000-0000-000000000000}"\r\n'
        f"Module={module}\r\n"
        'Name="Project"\r\nHelpContextID="0"\r\nVersionCompatible32="393222000"\r\n'
        "\r\n[Workspace]\r\n"
        f"{module}=0, 0, 0, 0, C\r\n"
    )
    return _cfb(
        {
            "PROJECT": project.encode("ascii"),
            "VBA/_VBA_PROJECT": struct.pack("<HHBH", 0x61CC, 0xFFFF, 0, 0),
            "VBA/dir": _ovba_compress(_vba_dir([module])),
            f"VBA/{module}": _ovba_compress(code.encode("cp1252")),
        }
    )


MACRO_ENABLED = "application/vnd.ms-word.document.macroEnabled.main+xml"
PLAIN_MAIN = "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"
VBA_RELATIONSHIP = "http://schemas.microsoft.com/office/2006/relationships/vbaProject"


def macro_docm(base: Path, dst: Path, marker: str) -> Path:
    """``base`` (a docx made by pandoc) turned into a macro-enabled document whose VBA
    ``AutoOpen`` macro, run when the document opens, writes ``marker``."""
    source = (
        "Sub AutoOpen()\n  Dim n As Integer\n  n = FreeFile()\n"
        f'  Open "{marker}" For Output As #n\n  Print #n, "macro ran"\n  Close #n\nEnd Sub\n'
    )
    with zipfile.ZipFile(base) as src, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as out:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename == "[Content_Types].xml":
                data = data.replace(PLAIN_MAIN.encode(), MACRO_ENABLED.encode()).replace(
                    b"<Default ",
                    b'<Default Extension="bin" ContentType="application/vnd.ms-office.'
                    b'vbaProject"/><Default ',
                    1,
                )
            elif info.filename == "word/_rels/document.xml.rels":
                data = data.replace(
                    b"</Relationships>",
                    f'<Relationship Id="rIdVbaProject" Type="{VBA_RELATIONSHIP}" '
                    'Target="vbaProject.bin"/></Relationships>'.encode(),
                )
            out.writestr(info.filename, data)
        out.writestr("word/vbaProject.bin", vba_project("Module1", source))
    return dst
