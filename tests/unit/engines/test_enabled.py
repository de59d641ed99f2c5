"""The enabled engines' descriptors, as the deploy reads them (family and Debian packages),
and the routes the router takes among them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from appliance.engines import LAYOUT_FONTS
from appliance.engines.enabled import enabled_engines
from appliance.engines.registry import Registry

# The families operators name in their inventories' `engine_families`: a rename breaks them.
FAMILIES = {"images", "data", "pdf", "ebooks", "ocr", "svg", "markup", "media", "office"}
FAMILIES |= {"chromium"}
DESCRIPTORS = [engine.descriptor for engine in enabled_engines()]
DEBIAN_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")  # Debian policy 5.6.1


@pytest.mark.parametrize("descriptor", DESCRIPTORS, ids=lambda d: d.id)
def test_every_enabled_engine_declares_a_known_family(descriptor):
    assert descriptor.family in FAMILIES


def test_every_family_an_inventory_may_name_still_has_engines():
    assert {d.family for d in DESCRIPTORS} == FAMILIES


@pytest.mark.parametrize("descriptor", DESCRIPTORS, ids=lambda d: d.id)
def test_an_engine_that_runs_programs_names_the_packages_that_bring_them(descriptor):
    if descriptor.requires:
        assert descriptor.packages
    assert all(DEBIAN_NAME.match(p) for p in descriptor.packages), descriptor.packages


def test_the_install_script_installs_every_engines_debian_packages():
    """scripts/install.sh (a single host, CI) and the worker role (the descriptors' packages)
    install the same engines, fonts included."""
    script = (Path(__file__).resolve().parents[3] / "scripts" / "install.sh").read_text()
    listed = re.search(r"RUNTIME_PKGS=\(([^)]*)\)", script)
    assert listed is not None
    runtime = set(listed.group(1).split())
    wanted = {p for engine in enabled_engines() for p in engine.descriptor.packages}
    assert wanted - runtime == set()
    assert set(LAYOUT_FONTS) <= wanted


REAL = Registry(enabled_engines())


@pytest.mark.parametrize(
    ("src", "dst", "route"),
    [
        # pictures: documents that can hold them do; text formats get OCR's text
        ("png", "docx", ["ocr-document"]),
        ("jpg", "rtf", ["ocr-document"]),
        ("avif", "odt", ["vips", "ocr-document"]),
        ("svg", "docx", ["rsvg", "ocr-document"]),  # a drawing, not its PDF's text
        ("png", "md", ["tesseract", "pandoc"]),
        ("png", "doc", ["ocr-document", "libreoffice"]),  # its docx, made a doc
        ("svg", "doc", ["rsvg", "ocr-document", "libreoffice"]),
        ("svg", "rtf", ["rsvg", "ocr-document"]),
        ("svg", "md", ["rsvg", "pdfium", "pandoc"]),
        # a PDF's text and the pictures in it, never pictures of its pages
        ("pdf", "docx", ["pdf-document"]),
        ("pdf", "rtf", ["pdf-document"]),
        ("pdf", "doc", ["pdf-document", "libreoffice"]),
        ("xls", "doc", ["libreoffice", "pdf-document", "libreoffice"]),
        ("pdf", "html", ["pdf-document"]),
        ("pdf", "md", ["pdfium", "pandoc"]),
        ("pptx", "docx", ["libreoffice", "pdf-document"]),
        # html never through LibreOffice's HTML import
        ("html", "doc", ["pandoc", "libreoffice"]),
        ("html", "pdf", ["chromium"]),
    ],
)
def test_the_router_takes_the_route_that_keeps_what_the_file_holds(src, dst, route):
    hops = REAL.route(src, dst)
    assert hops is not None
    assert [hop.engine.descriptor.id for hop in hops] == route
