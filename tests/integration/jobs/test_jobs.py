"""Jobs run end to end on real Postgres, Redis (Dramatiq), storage and libvips."""

from __future__ import annotations

import base64
import json
import urllib.request
import uuid

import dramatiq
import pyvips

from appliance.errors import InvalidData, RetryableError
from appliance.storage import object_key
from tests.integration.jobs.conftest import UPLOAD_CONVERT_EXPORT, as_operation, task


def _download(system, url, tmp_path):
    out = tmp_path / "download"
    if "/v2/files/" in url:  # the API's route (local disk, or sealed objects on S3)
        key = url.split("/v2/files/", 1)[1].split("?")[0].rsplit("/", 1)[0]
        system.rt.storage.get_to_path(key, out)
    else:
        out.write_bytes(urllib.request.urlopen(url).read())
    return out


def test_upload_convert_export_finishes_with_a_downloadable_output(system, png_file, tmp_path):
    job = system.create(UPLOAD_CONVERT_EXPORT, tag="t")
    assert job["status"] == "waiting"
    system.upload(task(job, "up")["id"], png_file)
    job = system.wait(job["id"])
    assert job["status"] == "finished", job
    conv = task(job, "c")
    assert conv["result"]["files"][0]["filename"] == "photo.webp"
    assert conv["engine"] == "vips" and conv["percent"] == 100
    url = task(job, "e")["result"]["files"][0]["url"]
    out = _download(system, url, tmp_path)
    img = pyvips.Image.new_from_file(str(out))
    assert (img.width, img.height) == (100, 63)  # 320x200 scaled to 100 wide
    assert out.read_bytes()[8:12] == b"WEBP"


class _Enqueued(dramatiq.Middleware):
    """Records the task id of every message the broker enqueues."""

    def __init__(self) -> None:
        self.task_ids: list[str] = []

    def before_enqueue(self, broker, message, delay):
        self.task_ids.append(message.args[0])


def test_export_url_runs_in_the_worker_that_finished_its_input(system, png_file):
    """export/url has no engine and no transfer: it is not queued behind conversions for
    another worker, the worker that finished the conversion runs it next."""
    enqueued = _Enqueued()
    system.broker.add_middleware(enqueued)
    job = system.create(UPLOAD_CONVERT_EXPORT)
    system.upload(task(job, "up")["id"], png_file)
    job = system.wait(job["id"])
    assert job["status"] == "finished", job
    export = task(job, "e")
    assert export["result"]["files"][0]["url"] and export["status"] == "finished"
    assert task(job, "c")["id"] in enqueued.task_ids
    assert export["id"] not in enqueued.task_ids


def test_identical_uploads_are_stored_once(system, png_file):
    for _ in range(2):
        job = system.create({"up": {"operation": "import/upload"}})
        system.upload(task(job, "up")["id"], png_file)
    rows = system.sql("SELECT refcount FROM files")
    assert [r["refcount"] for r in rows] == [2]


def test_same_conversion_reuses_the_cached_output_without_running_the_engine(system, png_file):
    calls = []
    original = system.runner.operations["convert"]

    def counting(rt, t, progress):
        calls.append(t.id)
        return original.run(rt, t, progress)

    system.runner.operations["convert"] = as_operation(counting)
    engine = system.rt.registry.engines[0]
    runs = []
    real_convert = engine.convert

    def spy(*a, **kw):
        runs.append(a)
        return real_convert(*a, **kw)

    engine.convert = spy
    try:
        for _ in range(2):
            job = system.create(UPLOAD_CONVERT_EXPORT)
            system.upload(task(job, "up")["id"], png_file)
            assert system.wait(job["id"])["status"] == "finished"
    finally:
        engine.convert = real_convert
    assert len(calls) == 2 and len(runs) == 1
    assert system.sql("SELECT count(*) AS n FROM conversion_cache")[0]["n"] == 1


def test_base64_import_runs_without_an_upload(system, png_file):
    job = system.create(
        {
            "b": {
                "operation": "import/base64",
                "file": base64.b64encode(png_file.read_bytes()).decode(),
                "filename": "x.png",
            },
            "c": {"operation": "convert", "input": "b", "output_format": "jpg"},
        }
    )
    assert task(job, "b")["status"] == "finished"
    job = system.wait(job["id"])
    assert job["status"] == "finished"
    assert task(job, "c")["result"]["files"][0]["filename"] == "x.jpg"


def test_content_not_matching_its_name_fails_the_task_and_job(system, tmp_path):
    fake = tmp_path / "fake.png"
    fake.write_bytes(b"this is text, not a png" * 10)
    job = system.create(UPLOAD_CONVERT_EXPORT)
    system.upload(task(job, "up")["id"], fake)
    job = system.wait(job["id"])
    assert job["status"] == "error"
    assert task(job, "c")["code"] == "INVALID_INPUT_FILE"
    assert task(job, "e")["code"] == "INPUT_TASK_FAILED"


def test_retryable_failure_retries_with_backoff_then_succeeds(system, png_file):
    original = system.runner.operations["convert"]
    attempts = []

    def flaky(rt, t, progress):
        attempts.append(t.attempts)
        if len(attempts) < 3:
            raise RetryableError("storage hiccup")
        return original.run(rt, t, progress)

    system.runner.operations["convert"] = as_operation(flaky)
    job = system.create(UPLOAD_CONVERT_EXPORT)
    system.upload(task(job, "up")["id"], png_file)
    job = system.wait(job["id"])
    assert job["status"] == "finished"
    assert attempts == [1, 2, 3]


def test_retryable_failure_gives_up_after_max_attempts(system, png_file):
    def always(rt, t, progress):
        raise RetryableError("storage down")

    system.runner.operations["convert"] = as_operation(always)
    job = system.create(UPLOAD_CONVERT_EXPORT)
    system.upload(task(job, "up")["id"], png_file)
    job = system.wait(job["id"])
    conv = task(job, "c")
    assert (job["status"], conv["status"]) == ("error", "error")
    assert "after 3 attempts" in conv["message"]


def test_a_crash_in_the_code_is_retried_then_fails_as_internal_error(system, png_file):
    """An exception that is no ApplianceError (a bug) is the service's fault: retried like a
    retryable failure, then the task fails with INTERNAL_ERROR naming only the exception's
    type (the traceback goes to the log, never to the client)."""
    attempts = []

    def buggy(rt, t, progress):
        attempts.append(t.attempts)
        raise KeyError("secret internal detail")

    system.runner.operations["convert"] = as_operation(buggy)
    job = system.create(UPLOAD_CONVERT_EXPORT)
    system.upload(task(job, "up")["id"], png_file)
    job = system.wait(job["id"])
    conv = task(job, "c")
    assert (job["status"], conv["status"], conv["code"]) == ("error", "error", "INTERNAL_ERROR")
    assert "KeyError" in conv["message"] and "secret" not in conv["message"]
    assert attempts == [1, 2, 3]
    assert task(job, "e")["code"] == "INPUT_TASK_FAILED"


def test_an_input_task_that_made_no_file_fails_its_dependent_with_no_input_files(system, png_file):
    """A metadata task ends with a result and no file: a convert that takes it as its input
    has nothing to convert."""
    job = system.create(
        {
            "b": {
                "operation": "import/base64",
                "filename": "p.png",
                "file": base64.b64encode(png_file.read_bytes()).decode(),
            },
            "m": {"operation": "metadata", "input": "b"},
            "c": {"operation": "convert", "input": "m", "output_format": "png"},
        }
    )
    job = system.wait(job["id"])
    assert task(job, "m")["status"] == "finished", job
    conv = task(job, "c")
    assert (conv["status"], conv["code"]) == ("error", "NO_INPUT_FILES"), conv


def test_permanent_failure_fails_at_once_with_its_code(system, png_file):
    calls = []

    def broken(rt, t, progress):
        calls.append(1)
        raise InvalidData("bad", code="SOMETHING_PERMANENT")

    system.runner.operations["convert"] = as_operation(broken)
    job = system.create(UPLOAD_CONVERT_EXPORT)
    system.upload(task(job, "up")["id"], png_file)
    job = system.wait(job["id"])
    assert task(job, "c")["code"] == "SOMETHING_PERMANENT" and calls == [1]


def test_deleting_a_job_removes_its_files_and_cached_results_at_once(system, png_file):
    job = system.create(UPLOAD_CONVERT_EXPORT)
    system.upload(task(job, "up")["id"], png_file)
    system.wait(job["id"])
    stored = [r["sha256"] for r in system.sql("SELECT sha256 FROM files")]
    assert len(stored) == 2 and all(system.rt.storage.exists(object_key(s)) for s in stored)
    system.call(system.svc.delete_job(system.user_id, __import__("uuid").UUID(job["id"])))
    # its download URLs stop working: the objects are gone, not left for an hour (or, for
    # the output, held by the conversion cache for days)
    assert not any(system.rt.storage.exists(object_key(s)) for s in stored)
    assert system.sql("SELECT count(*) AS n FROM files")[0]["n"] == 0
    assert system.sql("SELECT count(*) AS n FROM conversion_cache")[0]["n"] == 0


def test_deleting_a_job_keeps_what_another_job_of_the_user_still_uses(system, png_file):
    first = system.create(UPLOAD_CONVERT_EXPORT)
    system.upload(task(first, "up")["id"], png_file)
    system.wait(first["id"])
    second = system.create(UPLOAD_CONVERT_EXPORT)
    system.upload(task(second, "up")["id"], png_file)  # the same bytes: the same objects
    system.wait(second["id"])
    system.call(system.svc.delete_job(system.user_id, __import__("uuid").UUID(first["id"])))
    stored = [r["sha256"] for r in system.sql("SELECT sha256 FROM task_files")]
    assert len(set(stored)) == 2
    assert all(system.rt.storage.exists(object_key(s)) for s in stored)


def test_an_expired_jobs_objects_are_deleted_with_it_at_once(system, png_file):
    from appliance.jobs.reconciler import Reconciler

    job = system.create({"up": {"operation": "import/upload"}})
    system.upload(task(job, "up")["id"], png_file)
    sha = system.sql("SELECT sha256 FROM files")[0]["sha256"]
    system.sql("UPDATE jobs SET expires_at = now() - interval '1 minute'")
    report = Reconciler(system.rt).run_once()
    assert report.deleted_objects == 1  # an expired job's objects go with it, at once
    assert not system.rt.storage.exists(object_key(sha))


def test_stored_bytes_that_never_get_a_reference_are_cleaned_up(system, tmp_path):
    """E.g. an import/url download whose task was cancelled meanwhile: the object has a
    reserved `files` row with no reference, so the cleaner finds it after the grace period."""
    from appliance.conversions.files import sha256_of
    from appliance.conversions.work import store_file
    from appliance.jobs.reconciler import Reconciler

    orphan = tmp_path / "orphan.bin"
    orphan.write_bytes(b"never referenced" * 100)
    sha, size = sha256_of(orphan)
    store_file(system.rt, orphan, sha, size, system.user_id)
    assert system.rt.storage.exists(object_key(sha))
    Reconciler(system.rt).run_once()
    assert system.rt.storage.exists(object_key(sha))  # within the grace period
    system.sql("UPDATE files SET released_at = now() - interval '2 hours'")
    assert Reconciler(system.rt).run_once().deleted_objects == 1
    assert not system.rt.storage.exists(object_key(sha))


def test_reserving_a_hash_restarts_the_grace_of_an_unreferenced_object(system, tmp_path):
    from appliance.conversions.files import sha256_of
    from appliance.conversions.work import store_file
    from appliance.jobs.reconciler import Reconciler

    f = tmp_path / "again.bin"
    f.write_bytes(b"stored twice" * 100)
    sha, size = sha256_of(f)
    store_file(system.rt, f, sha, size, system.user_id)
    system.sql("UPDATE files SET released_at = now() - interval '2 hours'")
    f.write_bytes(b"stored twice" * 100)
    # a new upload of the same bytes, not yet referenced
    store_file(system.rt, f, sha, size, system.user_id)
    assert Reconciler(system.rt).run_once().deleted_objects == 0
    assert system.rt.storage.exists(object_key(sha))


def test_a_job_is_announced_once_when_it_ends_and_each_task_when_it_ends(system, png_file):
    """Sync job waits re-read the whole job on each announcement: its id is published only by
    the task end that ended the job, not by each task's end. The export, whose only input is
    the convert, ends in the same statement: one announcement names both, and the job. The
    upload's end, made by the API, is announced by the API."""
    from appliance.conversions.events import EVENTS_CHANNEL

    pubsub = system.rt.redis.pubsub()
    pubsub.subscribe(EVENTS_CHANNEL)
    try:
        assert pubsub.get_message(timeout=5)["type"] == "subscribe"
        job = system.create(UPLOAD_CONVERT_EXPORT)
        system.upload(task(job, "up")["id"], png_file)
        job = system.wait(job["id"])
        assert job["status"] == "finished", job
        seen: list[list[str]] = []
        while (message := pubsub.get_message(timeout=2)) is not None:
            seen.append(message["data"].decode().split())
    finally:
        pubsub.close()
    assert seen == [
        [task(job, "up")["id"]],  # the upload, ended by the API: the job goes on
        [task(job, "c")["id"], task(job, "e")["id"], job["id"]],
    ]
    export = task(job, "e")
    assert export["status"] == "finished" and export["started_at"] and export["ended_at"]
    [file] = export["result"]["files"]
    assert file["url"] and file["filename"] == task(job, "c")["result"]["files"][0]["filename"]


def test_an_export_of_two_inputs_runs_on_its_own_after_both(system, png_file):
    """Only an export whose one input is the task just ended ends with it; one of two inputs
    is still claimed and run by a worker once both have ended."""
    job = system.create(
        {
            "up": {"operation": "import/upload"},
            "a": {"operation": "convert", "input": "up", "output_format": "webp"},
            "b": {"operation": "convert", "input": "up", "output_format": "jpg"},
            "e": {"operation": "export/url", "input": ["a", "b"]},
        }
    )
    system.upload(task(job, "up")["id"], png_file)
    job = system.wait(job["id"])
    assert job["status"] == "finished", job
    names = [f["filename"] for f in task(job, "e")["result"]["files"]]
    assert [n.rsplit(".", 1)[1] for n in names] == ["webp", "jpg"]
    attempts = system.sql("SELECT attempts FROM tasks WHERE id = %s", task(job, "e")["id"])
    assert attempts[0]["attempts"] == 1  # claimed and run, not ended along with an input


def test_a_job_made_during_an_upload_on_its_task_moves_to_the_queue_the_file_needs(
    system, tmp_path
):
    """A convert created while the upload it takes as input is still arriving is planned on
    the light queue (the format is not known yet); the upload's end moves it to `office`."""
    job = system.create({"up": {"operation": "import/upload"}})
    up = task(job, "up")["id"]
    doc = tmp_path / "report.docx"
    doc.write_bytes(b"PK\x03\x04" + b"\0" * 4000)
    made = {}

    async def chunks():
        yield doc.read_bytes()[:1000]
        body = {"c": {"operation": "convert", "input": up, "output_format": "pdf"}}
        made["job"] = json.loads(await system.svc.create_job(system.user_id, body, None))
        yield doc.read_bytes()[1000:]

    system.call(system.svc.accept_upload(uuid.UUID(up), lambda: doc.name, chunks()))
    conv = task(made["job"], "c")
    assert system.sql("SELECT queue FROM tasks WHERE id = %s", conv["id"])[0]["queue"] == "office"


def test_the_route_planned_when_the_file_is_named_is_the_route_the_worker_runs(system, png_file):
    system.stop_worker()
    job = system.create(UPLOAD_CONVERT_EXPORT)
    system.upload(task(job, "up")["id"], png_file)
    conv = task(job, "c")
    [row] = system.sql("SELECT routes FROM tasks WHERE id = %s", conv["id"])
    assert row["routes"] == {"png": [{"from": "png", "to": "webp", "engine": "vips"}]}
    # another valid route, as if another host had planned it: the worker runs that one
    detour = [
        {"from": "png", "to": "tiff", "engine": "vips"},
        {"from": "tiff", "to": "webp", "engine": "vips"},
    ]
    system.sql(
        "UPDATE tasks SET routes = jsonb_build_object('png', %s::jsonb) WHERE id = %s",
        json.dumps(detour),
        conv["id"],
    )
    system.start_worker()
    job = system.wait(job["id"])
    assert job["status"] == "finished", job
    assert task(job, "c")["result"]["route"] == detour


def test_a_planned_route_whose_engine_is_gone_is_planned_again(system, png_file):
    system.stop_worker()
    job = system.create(UPLOAD_CONVERT_EXPORT)
    system.upload(task(job, "up")["id"], png_file)
    gone = [{"from": "png", "to": "webp", "engine": "no-longer-enabled"}]
    system.sql(
        "UPDATE tasks SET routes = jsonb_build_object('png', %s::jsonb) WHERE id = %s",
        json.dumps(gone),
        task(job, "c")["id"],
    )
    system.start_worker()
    job = system.wait(job["id"])
    assert job["status"] == "finished", job
    assert task(job, "c")["result"]["route"] == [{"from": "png", "to": "webp", "engine": "vips"}]
