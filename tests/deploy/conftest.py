"""Fixtures of the deploy tier: `lab_factory` boots real-host labs (tests/deploy/lab).

Tests that use a lab are marked `lab` automatically; they run in the default suite and fail
(never skip) when a tool the lab needs is missing."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from tests.deploy.fleet import fleet  # noqa: F401  (one fixture, so one fleet, for every module)
from tests.deploy.lab import Lab, start_lab

LabFactory = Callable[..., Lab]


@pytest.fixture(scope="session")
def lab_factory() -> Iterator[LabFactory]:
    """start(names, **options) -> a booted Lab; every lab started is torn down at session end
    (a test or fixture may stop its lab earlier with lab.stop())."""
    labs: list[Lab] = []

    def start(names: Sequence[str], **options: Any) -> Lab:
        lab = start_lab(names, **options)
        labs.append(lab)
        return lab

    yield start
    for lab in labs:
        lab.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "lab_factory" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.lab)
