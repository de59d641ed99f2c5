"""PDF/A-2b rules checked without the engine's word for it (veraPDF, the reference
validator, is not packaged for Debian): the structure through qpdf's check (pikepdf is
qpdf's binding), fonts through poppler's pdffonts, the rest through pikepdf reading the
objects themselves.

Checked: a sound file (qpdf's check); no encryption; a trailer /ID; an output intent
GTS_PDFA1 with an embedded ICC profile whose header is one (``acsp``) and whose component
count matches /N; every font embedded (pdffonts); no LZW or external streams; no
JavaScript, no launch or other forbidden actions, no embedded files; an XMP packet that
claims part 2, conformance B, and a PDF version of at most 1.7.

For PDF/A-1 also: no transparency (soft masks, alpha, transparency groups).

Not checked (what a full validator also does): that every colour used is covered by the
intent or a device-independent space; that font programs are valid and their widths match
the dictionaries; XMP schema validity and its agreement with the Info dictionary;
annotations' appearance streams and flags; transparency blending spaces; optional content
rules.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pikepdf

FORBIDDEN_ACTIONS = {"/Launch", "/Sound", "/Movie", "/ResetForm", "/ImportData", "/JavaScript"}


def _fonts_not_embedded(path: Path) -> list[str]:
    out = subprocess.run(["pdffonts", str(path)], capture_output=True, text=True, check=True)
    lines = out.stdout.splitlines()[2:]  # a header and a rule
    # columns: name type encoding emb sub uni object-id; the name may hold no spaces
    return [line.split()[0] for line in lines if line.split()[-5] != "yes"]


def _intent_problems(pdf: pikepdf.Pdf) -> list[str]:
    intents = [i for i in pdf.Root.get("/OutputIntents", []) if i.get("/S") == "/GTS_PDFA1"]
    if len(intents) != 1:
        return [f"{len(intents)} GTS_PDFA1 output intents, not one"]
    profile = intents[0].get("/DestOutputProfile")
    if not isinstance(profile, pikepdf.Stream):
        return ["the output intent has no embedded ICC profile"]
    icc = profile.read_bytes()
    problems = []
    if icc[36:40] != b"acsp":
        problems.append("the output profile is no ICC profile")
    components = {b"RGB ": 3, b"GRAY": 1, b"CMYK": 4}.get(icc[16:20])
    if components != int(profile.get("/N", 0)):
        problems.append(f"the profile's colour space {icc[16:20]!r} does not match /N")
    return problems


def _object_problems(pdf: pikepdf.Pdf) -> list[str]:
    problems = []
    for obj in pdf.objects:
        if isinstance(obj, pikepdf.Stream):
            filters = obj.get("/Filter")
            names = [filters] if isinstance(filters, pikepdf.Name) else list(filters or [])
            if pikepdf.Name.LZWDecode in names:
                problems.append("an LZW-compressed stream")
            if "/F" in obj:
                problems.append("a stream kept in an external file")
        elif isinstance(obj, pikepdf.Dictionary):
            if obj.get("/S") in FORBIDDEN_ACTIONS and obj.get("/Type", "/Action") == "/Action":
                problems.append(f"a forbidden action {obj.get('/S')}")
            if "/AA" in obj:
                problems.append("additional actions (/AA)")
    names = pdf.Root.get("/Names", pikepdf.Dictionary())
    for tree in ("/JavaScript", "/EmbeddedFiles"):
        if tree in names:
            problems.append(f"a {tree[1:]} name tree")
    return problems


def _transparency(pdf: pikepdf.Pdf) -> list[str]:
    """PDF/A-1 has no transparency: no soft masks, no constant alpha below 1, no
    transparency groups."""
    problems = []
    for obj in pdf.objects:
        if not isinstance(obj, pikepdf.Dictionary | pikepdf.Stream):
            continue
        for key in ("/ca", "/CA"):
            if key in obj and float(obj[key]) != 1.0:
                problems.append(f"alpha {key} {float(obj[key])}")
        if obj.get("/SMask", pikepdf.Name("/None")) != pikepdf.Name("/None"):
            problems.append("a soft mask")
        if obj.get("/S") == "/Transparency":
            problems.append("a transparency group")
    return problems


def pdfa_2b_problems(path: Path) -> list[str]:
    """What breaks the rules above (empty: none found)."""
    return pdfa_problems(path, 2)


def pdfa_problems(path: Path, part: int) -> list[str]:
    """What breaks the rules above for PDF/A-``part`` level b (1, 2 or 3): the same rules,
    with part 1 based on PDF 1.4 and the XMP claiming the part asked for."""
    with pikepdf.open(path) as pdf:
        problems = [f"qpdf's check: {p}" for p in pdf.check_pdf_syntax()]
        if pdf.is_encrypted:
            problems.append("encrypted")
        if "/ID" not in pdf.trailer:
            problems.append("no /ID in the trailer")
        based_on = 1.4 if part == 1 else 1.7
        if float(pdf.pdf_version) > based_on:
            problems.append(f"PDF {pdf.pdf_version} (PDF/A-{part} is based on {based_on})")
        problems += _intent_problems(pdf) + _object_problems(pdf)
        problems += _transparency(pdf) if part == 1 else []
        meta = pdf.open_metadata()
        if (meta.get("pdfaid:part"), meta.get("pdfaid:conformance")) != (str(part), "B"):
            problems.append(f"the XMP does not claim PDF/A-{part}b")
    problems += [f"font {name} not embedded" for name in _fonts_not_embedded(path)]
    return problems
