"""The enabled engines' descriptors, as the deploy reads them: family and Debian packages."""

from __future__ import annotations

import re

import pytest

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
