"""A worker whose disk is full (its data directory: the work area where inputs and outputs
pass on their way to and from the sandbox): the task fails with a code that says so after
its attempts (or moves to a worker with room), the worker lives on and converts again once
there is space."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.jobs.conftest import UPLOAD_CONVERT_EXPORT, task

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """The appliance's data directory on a filesystem of its own, 48 MiB (a tmpfs)."""
    path = tmp_path / "data"
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=True)


def fill(directory: Path) -> Path:
    """A file that takes every free byte of ``directory``'s filesystem."""
    ballast = directory / "ballast"
    with ballast.open("wb") as f:
        try:
            while True:
                f.write(b"\0" * (1 << 20))
                f.flush()
        except OSError:
            pass
    return ballast


def test_a_full_disk_fails_the_task_with_no_space_and_the_worker_converts_again(system, png_file):
    system.stop_worker()  # the input is stored before the disk fills
    job = system.create(UPLOAD_CONVERT_EXPORT)
    system.upload(task(job, "up")["id"], png_file)
    ballast = fill(system.settings.data_path)
    system.start_worker()
    failed = system.wait(job["id"], timeout=60)
    convert = task(failed, "c")
    assert (failed["status"], convert["status"], convert["code"]) == ("error", "error", "NO_SPACE")
    assert "disk" in convert["message"]
    assert system.sql("SELECT attempts FROM tasks WHERE id = %s", convert["id"])[0]["attempts"] > 1
    ballast.unlink()
    again = system.create(UPLOAD_CONVERT_EXPORT)
    system.upload(task(again, "up")["id"], png_file)
    assert system.wait(again["id"], timeout=60)["status"] == "finished"
