"""fleet.defaults' engine tables: derived from the engine descriptors, their one home."""

from __future__ import annotations

import runpy

import pytest
from fleet.defaults import DEFAULTS, FAMILY_QUEUE, active_queues, engine_packages

from appliance.engines import QUEUE_CLASSES
from appliance.engines.enabled import enabled_engines
from tests.deploy.unit.conftest import DEPLOY

DESCRIPTORS = [engine.descriptor for engine in enabled_engines()]
FAMILIES = sorted({d.family for d in DESCRIPTORS})


@pytest.mark.parametrize("descriptor", DESCRIPTORS, ids=lambda d: d.id)
def test_an_engines_packages_come_with_its_family(descriptor):
    assert set(descriptor.packages) <= set(engine_packages([descriptor.family]))


@pytest.mark.parametrize("family", FAMILIES)
def test_a_family_installs_only_its_engines_packages(family):
    declared = {p for d in DESCRIPTORS if d.family == family for p in d.packages}
    assert engine_packages([family]) == sorted(declared)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_family_runs_the_heaviest_queue_of_its_engines(family):
    queues = [d.queue for d in DESCRIPTORS if d.family == family]
    heaviest = max(queues, key=QUEUE_CLASSES.index)
    assert FAMILY_QUEUE[family] == heaviest
    assert active_queues([family]) == [heaviest]


def test_workers_get_every_family_by_default():
    assert sorted(DEFAULTS["engine_families"]) == FAMILIES


@pytest.mark.parametrize("inventory", ["example", "lab"])
def test_the_inventories_families_all_exist(inventory):
    group_data = DEPLOY / "inventories" / inventory / "group_data"
    for path in group_data.glob("*.py"):
        families = runpy.run_path(str(path)).get("engine_families")
        if families is not None:
            engine_packages(families)  # raises on an unknown family
            assert active_queues(families)
