"""Task and job metrics move as they should for a finished and a failed job, and worker log
lines of a task carry the request id of the API call that created it."""

from __future__ import annotations

import json
import logging
import time

from prometheus_client import REGISTRY

from appliance import logs
from tests.integration.jobs.conftest import UPLOAD_CONVERT_EXPORT, task

ENGINE_PAIR = {"engine": "vips", "src": "png", "dst": "webp"}


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def snapshot() -> dict[str, float]:
    return {
        "created": value("appliance_jobs_created_total"),
        "jobs_finished": value("appliance_jobs_ended_total", status="finished", fault="none"),
        "jobs_error": value("appliance_jobs_ended_total", status="error", fault="client"),
        "jobs_error_service": value("appliance_jobs_ended_total", status="error", fault="service"),
        "upload_finished": value(
            "appliance_tasks_ended_total", operation="import/upload", status="finished"
        ),
        "convert_finished": value(
            "appliance_tasks_ended_total", operation="convert", status="finished"
        ),
        "convert_error": value("appliance_tasks_ended_total", operation="convert", status="error"),
        "export_finished": value(
            "appliance_tasks_ended_total", operation="export/url", status="finished"
        ),
        "conversions_ok": value("appliance_conversions_total", **ENGINE_PAIR, result="ok"),
        "conversion_seconds": value("appliance_conversion_duration_seconds_count", **ENGINE_PAIR),
        "cache_miss": value("appliance_conversion_cache_lookups_total", result="miss"),
        "cache_hit": value("appliance_conversion_cache_lookups_total", result="hit"),
        "written": value("appliance_storage_writes_total", result="written"),
        "dedup": value("appliance_storage_writes_total", result="deduplicated"),
        "upload_bytes": value("appliance_upload_bytes_total", source="upload"),
        "in_progress": value("appliance_tasks_in_progress", queue="light"),
    }


def changes(before: dict[str, float], until: str) -> dict[str, float]:
    """What changed since ``before``, once ``until`` has (a worker counts a task just after
    its commit, so a client may see the job end a moment before the count)."""
    deadline = time.monotonic() + 10
    while True:
        after = snapshot()
        diff = {k: after[k] - before[k] for k in before if after[k] != before[k]}
        if until in diff or time.monotonic() > deadline:
            return diff
        time.sleep(0.02)


def test_a_finished_job_moves_job_task_conversion_storage_and_upload_metrics(system, png_file):
    job_spec = {**UPLOAD_CONVERT_EXPORT, "c": {**UPLOAD_CONVERT_EXPORT["c"], "width": 77}}
    before = snapshot()
    job = system.create(job_spec)
    system.upload(task(job, "up")["id"], png_file)
    assert system.wait(job["id"])["status"] == "finished"
    size = png_file.stat().st_size
    diff = changes(before, until="export_finished")
    stored = diff.pop("written", 0) + diff.pop("dedup", 0)
    assert stored == 2  # the upload and the output, each written or found already there
    assert diff == {
        "created": 1,
        "jobs_finished": 1,
        "upload_finished": 1,
        "convert_finished": 1,
        "export_finished": 1,
        "conversions_ok": 1,
        "conversion_seconds": 1,
        "cache_miss": 1,
        "upload_bytes": size,
    }

    before = snapshot()  # the same conversion again: a cache hit, no engine run
    job = system.create(job_spec)
    system.upload(task(job, "up")["id"], png_file)
    assert system.wait(job["id"])["status"] == "finished"
    diff = changes(before, until="export_finished")
    assert diff.get("cache_hit") == 1 and "cache_miss" not in diff
    assert "conversions_ok" not in diff and diff.get("dedup") == 1


def test_a_file_the_engine_rejects_counts_as_a_job_error_by_the_client(system, tmp_path):
    fake = tmp_path / "fake.png"
    fake.write_bytes(b"this is text, not a png" * 10)
    before = snapshot()
    job = system.create(UPLOAD_CONVERT_EXPORT)
    system.upload(task(job, "up")["id"], fake)
    assert system.wait(job["id"])["status"] == "error"
    diff = changes(before, until="convert_error")
    assert diff.get("convert_error") == 1 and diff.get("jobs_error") == 1
    assert "jobs_finished" not in diff and "convert_finished" not in diff
    assert "export_finished" not in diff and "jobs_error_service" not in diff


class _Lines(logging.Handler):
    """Formats each record where it is logged (the worker's thread and context)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logs.JsonFormatter())
        self.lines: list[dict[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


def test_worker_log_lines_of_a_task_carry_the_request_job_and_task_ids(system, tmp_path):
    fake = tmp_path / "fake.png"
    fake.write_bytes(b"not a png at all" * 10)
    handler = _Lines()
    logger = logging.getLogger("appliance")
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    token = logs.request_id.set("req-from-the-api")
    try:
        job = system.create(UPLOAD_CONVERT_EXPORT)
        system.upload(task(job, "up")["id"], fake)
        system.wait(job["id"])
    finally:
        logs.request_id.reset(token)
        logger.removeHandler(handler)
        logger.setLevel(level)
    convert_id = task(job, "c")["id"]
    failed = [line for line in handler.lines if line["msg"].startswith(f"task {convert_id} failed")]
    assert failed, handler.lines
    assert failed[0]["request_id"] == "req-from-the-api"
    assert failed[0]["job_id"] == job["id"] and failed[0]["task_id"] == convert_id
