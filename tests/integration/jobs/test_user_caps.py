"""Per-user caps in the service: tasks per job, jobs in flight, stored bytes, import/base64
bytes per request. One user at a cap is refused; another user is not; room comes back when
work ends or is deleted."""

from __future__ import annotations

import base64
import json
import uuid

import msgspec
import pytest

from appliance.errors import FileTooLarge, InvalidData, QuotaExceeded, TooManyRequests
from tests.integration.jobs.conftest import task


def _capped(system, **caps):
    system.svc.settings = msgspec.structs.replace(system.settings, **caps)


def _upload_job(system, user_id=None):
    tasks = {"up": {"operation": "import/upload"}}
    return json.loads(system.call(system.svc.create_job(user_id or system.user_id, tasks, None)))


def _other_user(system):
    row = system.sql(
        "INSERT INTO users (email) VALUES (%s) RETURNING id", f"{uuid.uuid4().hex}@example.test"
    )
    return row[0]["id"]


def _stored(system, user_id):
    return system.sql("SELECT appliance_stored_bytes(%s) AS n", user_id)[0]["n"]


def test_a_job_past_the_task_cap_is_refused(system):
    _capped(system, max_tasks_per_job=3)
    tasks = {f"t{i}": {"operation": "import/upload"} for i in range(4)}
    with pytest.raises(InvalidData) as refused:
        system.call(system.svc.create_job(system.user_id, tasks, None))
    assert refused.value.code == "TOO_MANY_TASKS"
    del tasks["t3"]
    system.create(tasks)  # three is fine


def test_jobs_in_flight_are_capped_per_user_until_one_ends(system):
    system.stop_worker()  # nothing ends by itself
    _capped(system, max_jobs_in_flight_per_user=3)
    jobs = [_upload_job(system) for _ in range(2)]
    system.call(system.svc.create_task(system.user_id, "import/upload", {}))  # a single task
    with pytest.raises(TooManyRequests) as refused:
        _upload_job(system)
    assert refused.value.code == "TOO_MANY_JOBS_IN_FLIGHT"
    assert int(refused.value.headers()["Retry-After"]) > 0
    with pytest.raises(TooManyRequests):
        system.call(system.svc.create_task(system.user_id, "import/upload", {}))
    _upload_job(system, _other_user(system))  # another user's room is their own
    system.call(system.svc.delete_job(system.user_id, uuid.UUID(jobs[0]["id"])))
    _upload_job(system)  # room again


def test_stored_bytes_are_counted_and_capped_per_user(system, png_file):
    size = png_file.stat().st_size
    _capped(system, max_stored_bytes_per_user=size * 2 + size // 2)
    first = _upload_job(system)
    system.upload(task(first, "up")["id"], png_file)
    assert _stored(system, system.user_id) == size
    second = _upload_job(system)
    system.upload(task(second, "up")["id"], png_file)  # the same bytes held twice count twice
    assert _stored(system, system.user_id) == 2 * size
    third = _upload_job(system)  # under the cap still: the job is made
    with pytest.raises(QuotaExceeded):  # but the file would pass it
        system.upload(task(third, "up")["id"], png_file)
    assert task(system.job(third["id"]), "up")["status"] == "waiting"  # may try a smaller one
    assert _stored(system, system.user_id) == 2 * size

    _capped(system, max_stored_bytes_per_user=2 * size)  # at the cap: no new work at all
    with pytest.raises(QuotaExceeded) as refused:
        _upload_job(system)
    assert refused.value.status == 403 and refused.value.code == "STORAGE_QUOTA_EXCEEDED"
    _upload_job(system, _other_user(system))

    system.call(system.svc.delete_job(system.user_id, uuid.UUID(first["id"])))
    assert _stored(system, system.user_id) == size  # a deleted job's files no longer count
    _upload_job(system)


def test_a_conversions_outputs_count_toward_its_users_bytes(system, png_file):
    data = png_file.read_bytes()
    tasks = {
        "in": {
            "operation": "import/base64",
            "file": base64.b64encode(data).decode(),
            "filename": "a.png",
        },
        "c": {"operation": "convert", "input": "in", "output_format": "webp"},
    }
    job = system.wait(system.create(tasks)["id"])
    assert job["status"] == "finished", job
    [out] = system.sql("SELECT size FROM task_files WHERE task_id = %s", task(job, "c")["id"])
    assert _stored(system, system.user_id) == len(data) + out["size"]


def test_import_base64_files_of_one_request_share_one_cap(system):
    _capped(system, max_inline_file_bytes=1000)
    one = base64.b64encode(b"x" * 600).decode()
    tasks = {n: {"operation": "import/base64", "file": one, "filename": "a.txt"} for n in "ab"}
    with pytest.raises(FileTooLarge) as refused:  # 1,200 bytes in all
        system.create(tasks)
    assert "import/upload" in refused.value.message
    del tasks["b"]
    system.create(tasks)
