"""The enabled engines' descriptors, as the deploy reads them: family and Debian packages."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from appliance.engines import LAYOUT_FONTS
from appliance.engines.enabled import enabled_engines

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
