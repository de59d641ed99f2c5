"""What Gotenberg's routes answer with: the one file or a zip made as it streams, a failed
job's status, and the webhook request a Gotenberg job's end becomes."""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from datetime import UTC, datetime

from appliance.conversions.files import unique_names
from appliance.conversions.gotenberg import (
    HOOK_TAG,
    VERSION,
    Hook,
    Output,
    answer_name,
    body_of,
    event_request,
    failure,
    hook_in,
    hook_request,
    job_state,
    tag_of,
)

FILES = {"a": b"first" * 1000, "b": b"second"}


def read(sha: str):
    data = FILES[sha]
    return iter([data[:100], data[100:]])


def test_one_output_is_sent_as_it_is_and_several_as_a_zip_of_unique_names():
    assert b"".join(body_of([Output("a", "x.pdf", 5000)], read)) == FILES["a"]
    files = [Output("a", "x.pdf", 5000), Output("b", "x.pdf", 6)]
    with zipfile.ZipFile(io.BytesIO(b"".join(body_of(files, read)))) as archive:
        assert archive.namelist() == ["x.pdf", "x-2.pdf"]
        assert archive.read("x.pdf") == FILES["a"] and archive.read("x-2.pdf") == FILES["b"]


def test_names_follow_the_output_filename_header_or_the_file():
    one, two = [Output("a", "doc.pdf", 1)], [Output("a", "a.pdf", 1), Output("b", "b.png", 1)]
    assert answer_name(one, None) == "doc.pdf" and answer_name(one, "report") == "report.pdf"
    assert answer_name(two, "all") == "all.zip" and answer_name(two, None).endswith(".zip")
    assert unique_names(["a", "a", "a.pdf", "a.pdf"]) == ["a", "a-2", "a.pdf", "a-2.pdf"]


def job(status: str, *tasks: dict, tag: str | None = None) -> dict:
    base = {"id": str(uuid.uuid4()), "status": status, "tag": tag}
    return {**base, "tasks": [{"id": str(uuid.uuid4()), **t} for t in tasks]}


def test_a_failed_job_is_its_first_own_failure_with_gotenberg_s_status():
    doc = job(
        "error",
        {"name": "convert", "status": "error", "code": "INVALID_INPUT_FILE", "message": "bad"},
        {"name": "export", "status": "error", "code": "INPUT_TASK_FAILED", "message": "x"},
    )
    assert failure(job_state(json.dumps(doc))) == (400, "bad (INVALID_INPUT_FILE)")
    doc["tasks"][0]["code"] = "ENGINE_CRASHED"
    assert failure(job_state(json.dumps(doc)))[0] == 500


def test_a_hook_goes_into_a_tag_and_comes_back_only_from_one():
    hook = Hook(url="http://r/ok", error_url="http://r/err", trace="t", last="merge")
    tag = tag_of(hook, lambda text: text[::-1])  # any sealing that opens again
    body = json.dumps({"event": "job.finished", "job": job("finished", tag=tag)})
    assert tag.startswith(HOOK_TAG)
    assert hook_in(body, lambda sealed: sealed[::-1]) == hook
    plain = json.dumps({"event": "job.finished", "job": job("finished", tag="mine")})
    assert hook_in(plain, lambda sealed: sealed) is None


def test_a_finished_job_sends_its_file_with_gotenberg_s_headers():
    hook = Hook(url="http://r/ok", error_url="http://r/err", method="PUT", trace="t",
                last="merge", extra_headers={"X-K": "v"}, output_filename="out")  # fmt: skip
    doc = job("finished", {"name": "merge", "status": "finished"})
    merge_id = uuid.UUID(doc["tasks"][0]["id"])
    outputs = {merge_id: [Output("a", "x.pdf", 5000)]}
    request = hook_request(hook, json.dumps({"event": "job.finished", "job": doc}), outputs.get)
    assert (request.method, request.url) == ("PUT", "http://r/ok")
    assert request.headers["Content-Type"] == "application/pdf"
    assert request.headers["Content-Length"] == "5000" and request.headers["X-K"] == "v"
    assert request.headers["Gotenberg-Trace"] == "t"
    assert request.headers["Gotenberg-Version"] == VERSION == "9.0.0-appliance"
    assert 'filename="out.pdf"' in request.headers["Content-Disposition"]
    assert b"".join(request.chunks(read)) == FILES["a"]


def test_a_failed_job_sends_status_and_message_to_the_error_url():
    hook = Hook(url="http://r/ok", error_url="http://r/err", error_method="PATCH", last="m")
    doc = job("error", {"name": "m", "status": "error", "code": "INVALID_INPUT_FILE",
                        "message": "not a pdf"})  # fmt: skip
    request = hook_request(hook, json.dumps({"event": "job.failed", "job": doc}), lambda _: [])
    assert (request.method, request.url) == ("PATCH", "http://r/err")
    assert request.headers["Gotenberg-Version"] == VERSION
    assert json.loads(b"".join(request.chunks(read))) == {
        "status": 400,
        "message": "not a pdf (INVALID_INPUT_FILE)",
    }


def test_an_event_carries_the_trace_and_gotenberg_s_version():
    hook = Hook(url="http://r/ok", events_url="http://r/events", trace="t", last="m")
    event = event_request(hook, (400, "bad"), datetime(2026, 1, 2, tzinfo=UTC))
    assert event.headers["Gotenberg-Trace"] == "t"
    assert event.headers["Gotenberg-Version"] == VERSION
