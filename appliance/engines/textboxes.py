"""Text boxes of a docx brought into its body, for pandoc, whose docx reader (2.17, Debian 12)
drops a text box's content: a document whose text is all in text boxes (a title page, a
layout made of shapes) came out empty.

Each text box's paragraphs and tables are moved after the body paragraph that anchors it, in
document order; the copy Word keeps for older readers (``mc:Fallback``) is left where it is,
as pandoc ignores it, so nothing is read twice. The package's other parts are copied as they
are.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
MC = "http://schemas.openxmlformats.org/markup-compatibility/2006"
DOCUMENT = "word/document.xml"
MAX_ROUNDS = 8  # text boxes inside text boxes, lifted one level a round


def _parser() -> Any:
    from lxml import etree

    # No entities, no DTD fetching, no network: the part is untrusted (and a bomb refused).
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


def _lift(root: Any) -> int:
    """Move the content of each outermost text box after its anchoring paragraph; how many
    text boxes were emptied."""
    boxes = [
        box
        for box in root.iter(f"{{{W}}}txbxContent")
        if next(box.iterancestors(f"{{{MC}}}Fallback", f"{{{W}}}txbxContent"), None) is None
        and len(box)
    ]
    for box in boxes:
        anchor = next(box.iterancestors(f"{{{W}}}p"), None)
        if anchor is None:
            continue
        position = anchor
        for block in list(box):
            if block.tag in (f"{{{W}}}p", f"{{{W}}}tbl"):
                position.addnext(block)
                position = block
    return len(boxes)


def lift_text_boxes(src: Path, dst: Path) -> Path:
    """``src`` if its body holds no text box, else ``dst``: the same docx with its text
    boxes' content in the body."""
    from lxml import etree

    with zipfile.ZipFile(src) as package:
        if DOCUMENT not in package.namelist():
            return src
        data = package.read(DOCUMENT)
        if b"txbxContent" not in data:
            return src
        root = etree.fromstring(data, _parser())
        for _ in range(MAX_ROUNDS):
            if not _lift(root):
                break
        with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as out:
            for member in package.infolist():
                if member.filename == DOCUMENT:
                    out.writestr(
                        member,
                        etree.tostring(
                            root, xml_declaration=True, encoding="UTF-8", standalone=True
                        ),
                    )
                else:
                    out.writestr(member, package.read(member))
    return dst
