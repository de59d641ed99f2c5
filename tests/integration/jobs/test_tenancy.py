"""One user's files and cached results are theirs: identical bytes of two users are two
objects and two cache entries, and the cache keys everything that determines an output,
including the format the input is read as."""

from __future__ import annotations

import base64
import json
import time
import uuid

from appliance.settings import Settings
from appliance.storage import object_key
from tests.integration.jobs.conftest import task

RAW_HTML = b"<b>raw</b> text\n"


def _convert(system, user_id, filename, data, output_format):
    tasks = {
        "in": {
            "operation": "import/base64",
            "file": base64.b64encode(data).decode(),
            "filename": filename,
        },
        "c": {"operation": "convert", "input": "in", "output_format": output_format},
    }
    job_id = uuid.UUID(json.loads(system.call(system.svc.create_job(user_id, tasks, None)))["id"])
    for _ in range(600):
        job = json.loads(system.call(system.svc.get_job(user_id, job_id)))
        if job["status"] in ("finished", "error"):
            break
        time.sleep(0.1)
    assert job["status"] == "finished", job
    return job


def _output(system, job):
    [row] = system.sql("SELECT sha256 FROM task_files WHERE task_id = %s", task(job, "c")["id"])
    return b"".join(system.rt.storage.iter_bytes(object_key(row["sha256"])))


def _other_user(system):
    row = system.sql(
        "INSERT INTO users (email) VALUES (%s) RETURNING id", f"{uuid.uuid4().hex}@example.test"
    )
    return row[0]["id"]


def test_the_same_bytes_read_as_another_format_are_converted_again(system):
    markdown = _output(system, _convert(system, system.user_id, "notes.md", RAW_HTML, "html"))
    rst = _output(system, _convert(system, system.user_id, "notes.rst", RAW_HTML, "html"))
    assert b"<b>raw</b>" in markdown  # markdown passes raw HTML through
    assert b"<b>raw</b>" not in rst and b"&lt;b&gt;" in rst  # reStructuredText escapes it
    assert system.sql("SELECT count(*) AS n FROM conversion_cache")[0]["n"] == 2


def test_identical_files_of_two_users_are_two_objects_and_two_cache_entries(system, png_file):
    data = png_file.read_bytes()
    mine = _convert(system, system.user_id, "a.png", data, "webp")
    theirs = _convert(system, _other_user(system), "a.png", data, "webp")
    digests = {
        row["sha256"]
        for row in system.sql(
            "SELECT sha256 FROM task_files WHERE task_id = ANY(%s::uuid[])",
            [task(mine, "in")["id"], task(theirs, "in")["id"]],
        )
    }
    assert len(digests) == 2  # stored twice: neither user learns the other has the file
    assert system.sql("SELECT count(*) AS n FROM conversion_cache")[0]["n"] == 2


def test_a_single_tenant_install_shares_files_across_users():
    from appliance.conversions.files import owned_digest, owner

    shared = Settings.from_env({"APPLIANCE_SHARE_FILES_ACROSS_USERS": "true"})
    private = Settings.from_env({})
    sha = "ab" * 32
    assert owned_digest(sha, owner(shared, uuid.uuid4())) == sha
    a, b = (owned_digest(sha, owner(private, uuid.uuid4())) for _ in range(2))
    assert len({a, b, sha}) == 3
