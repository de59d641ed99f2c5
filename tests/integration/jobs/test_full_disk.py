"""A worker whose disk is full (its data directory: the work area where inputs and outputs
pass on their way to and from the sandbox): the task fails with a code that says so after
its attempts (or moves to a worker with room), the worker lives on and converts again once
there is space. After meeting the full disk it hands tasks back to the queue for a while
instead of spending their attempts (``no_space_pause_seconds``)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from appliance.settings import Settings
from tests.integration.jobs.conftest import UPLOAD_CONVERT_EXPORT, JobSystem, task

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


PAUSE = 4.0  # seconds a worker that met the full disk hands tasks back


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return msgspec.structs.replace(settings, no_space_pause_seconds=PAUSE)


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


def met_full_disk(system: JobSystem, task_id: str) -> bool:
    row = system.sql("SELECT status, message FROM tasks WHERE id = %s", task_id)[0]
    return row["status"] == "waiting" and "disk is full" in (row["message"] or "")


def attempts(system: JobSystem, task_id: str) -> int:
    return int(system.sql("SELECT attempts FROM tasks WHERE id = %s", task_id)[0]["attempts"])


def test_after_a_full_disk_the_worker_hands_tasks_back_without_spending_attempts(system, png_file):
    system.stop_worker()
    first, stored = system.create(UPLOAD_CONVERT_EXPORT), system.create(UPLOADED)
    system.upload(task(first, "up")["id"], png_file)
    system.upload(task(stored, "up")["id"], png_file)  # an input for a later job
    ballast = fill(system.settings.data_path)
    system.start_worker()
    deadline = time.monotonic() + 30
    while not met_full_disk(system, task(first, "c")["id"]):  # its retry is written
        assert time.monotonic() < deadline, "the first conversion never met the full disk"
        time.sleep(0.05)
    met = time.monotonic()
    second = system.create(convert_of(task(stored, "up")["id"]))  # no disk needed to make it
    time.sleep(PAUSE / 2)
    # within the pause neither the retry nor the new task was taken: no attempt spent
    assert time.monotonic() - met < PAUSE
    assert attempts(system, task(first, "c")["id"]) == 1
    assert attempts(system, task(second, "c")["id"]) == 0
    ballast.unlink()
    for job in (first, second):  # once the pause is over, both convert
        assert system.wait(job["id"], timeout=60)["status"] == "finished"


UPLOADED = {"up": {"operation": "import/upload"}}


def convert_of(upload_task_id: str) -> dict:
    return {
        "c": {"operation": "convert", "input": upload_task_id, "output_format": "webp"},
        "e": {"operation": "export/url", "input": "c"},
    }
