"""A task's `engine`, `engine_version` and `timeout` have effects: the engine chooses the route
that makes the output, a version is checked against what is installed (when the job is made,
and again by the worker when the input's format was unknown then), and the timeout bounds the
task. A value the appliance cannot honour is a 422, never accepted and ignored."""

from __future__ import annotations

import base64
import time

import pytest

from appliance.errors import InvalidData
from tests.integration.jobs.conftest import task

TEXT = {"operation": "import/base64", "file": base64.b64encode(b"hello\n").decode()}


def _job(**convert):
    return {
        "in": {**TEXT, "filename": "a.txt"},
        "c": {"operation": "convert", "input": "in", "output_format": "html", **convert},
    }


def _engines_of(system, job):
    [row] = system.sql("SELECT routes FROM tasks WHERE id = %s", task(job, "c")["id"])
    return [step["engine"] for step in row["routes"]["txt"]]


def _refused(system, tasks) -> InvalidData:
    with pytest.raises(InvalidData) as refused:
        system.call(system.svc.create_job(system.user_id, tasks, None))
    return refused.value


def test_an_engine_chooses_the_route_that_makes_the_output(system):
    system.stop_worker()  # only the plans are looked at
    assert _engines_of(system, system.create(_job(engine="pandoc"))) == ["pandoc"]
    assert _engines_of(system, system.create(_job(engine="libreoffice"))) == ["libreoffice"]
    assert _engines_of(system, system.create(_job())) in (["pandoc"], ["libreoffice"])


def test_an_engine_not_installed_or_unable_to_make_the_output_is_refused(system):
    missing = _refused(system, _job(engine="no-such-engine"))
    assert "tasks.c.engine" in missing.errors
    unable = _refused(system, _job(engine="vips"))  # images only
    assert "tasks.c.engine" in unable.errors and "with vips" in unable.errors["tasks.c.engine"][0]


def test_an_engine_version_is_checked_against_the_route(system):
    engine = system.rt.registry.engine("pandoc")
    system.create(_job(engine="pandoc", engine_version=engine.descriptor.version()))
    wrong = _refused(system, _job(engine="pandoc", engine_version="0.0.1"))
    assert "tasks.c.engine_version" in wrong.errors


def test_the_worker_checks_a_pinned_version_once_the_input_is_known(system, tmp_path):
    tasks = {
        "up": {"operation": "import/upload"},
        "c": {"operation": "convert", "input": "up", "output_format": "html",
              "engine_version": "0.0.1"},
    }  # fmt: skip
    job = system.create(tasks)  # the input's format is unknown until the upload
    text = tmp_path / "a.txt"
    text.write_text("hello\n")
    system.upload(task(job, "up")["id"], text)
    job = system.wait(job["id"])
    converted = task(job, "c")
    assert converted["status"] == "error" and converted["code"] == "ENGINE_VERSION_UNAVAILABLE"


def test_operations_refuse_an_engine_they_do_not_run_on(system):
    upload = _refused(system, {"up": {"operation": "import/upload", "engine": "vips"}})
    assert upload.errors["tasks.up.engine"] == ["import/upload runs no engine"]


@pytest.mark.parametrize("timeout", ["10", -1, 0, True, 86_401])
def test_a_timeout_must_be_a_number_of_seconds_within_a_day(system, timeout):
    assert "tasks.c.timeout" in _refused(system, _job(timeout=timeout)).errors


def test_a_task_past_its_timeout_fails_with_timeout(system, png_file):
    tasks = {
        "in": {
            "operation": "import/base64",
            "file": base64.b64encode(png_file.read_bytes()).decode(),
            "filename": "a.png",
        },
        "slow": {"operation": "convert", "input": "in", "output_format": "webp",
                 "timeout": 0.001},
        "fast": {"operation": "convert", "input": "in", "output_format": "jpg", "timeout": 60},
    }  # fmt: skip
    job = system.create(tasks)
    for _ in range(300):  # the job is an error once one task is: wait for both
        job = system.job(job["id"])
        if all(t["status"] in ("finished", "error") for t in job["tasks"]):
            break
        time.sleep(0.1)
    slow, fast = task(job, "slow"), task(job, "fast")
    assert slow["status"] == "error" and slow["code"] == "TIMEOUT", slow
    assert "0.001 s" in slow["message"]
    assert fast["status"] == "finished", fast
