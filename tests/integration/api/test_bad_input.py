"""Requests the schemathesis run (test_openapi_fuzz.py) found answered with a 500: each is
now a 4xx in CloudConvert's error shape, naming what is wrong."""

from __future__ import annotations

import uuid

import pytest
from cloudconvert.signed_url import SignedUrl

NUL_BODIES = [
    # a NUL in a field (Postgres jsonb refuses \u0000)
    (
        "/v2/jobs",
        {"tasks": {"a": {"operation": "import/url", "url": "https://example.com/a\x00.png"}}},
        "tasks.a.url",
    ),
    # in a task's name (a text column)
    ("/v2/jobs", {"tasks": {"a\x00": {"operation": "import/upload"}}}, "tasks.a\x00"),
    # deep in an option, as schemathesis sent it to a single-task route
    ("/v2/import/upload", {"x": [{"y": ["ok", "\x00"]}]}, "tasks.task.x.0.y.1"),
    # in the job's tag
    ("/v2/jobs", {"tasks": {"a": {"operation": "import/upload"}}, "tag": "t\x00"}, "tag"),
]


@pytest.mark.parametrize(("path", "body", "field"), NUL_BODIES)
def test_a_nul_character_in_a_body_is_422_naming_the_field(api, path, body, field):
    r = api.post(path, json=body)
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "INVALID_DATA"
    assert field in r.json()["errors"], r.json()


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/v2/jobs", "filter[tag]"),
        ("/v2/tasks", "filter[operation]"),
        ("/v2/webhooks", "filter[url]"),
        ("/v2/users/me/webhooks", "filter[url]"),
    ],
)
def test_a_nul_character_in_a_list_filter_is_422_naming_the_filter(api, path, name):
    r = api.get(path, params={name: "x\x00"})
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "INVALID_DATA"
    assert name in r.json()["errors"], r.json()


def test_a_job_filter_that_is_no_uuid_is_422_not_404(api):
    r = api.get("/v2/tasks", params={"filter[job_id]": "not-a-uuid"})
    assert r.status_code == 422, r.text
    assert "filter[job_id]" in r.json()["errors"], r.json()


def test_a_task_filter_on_an_unknown_job_is_an_empty_list(api):
    r = api.get("/v2/tasks", params={"filter[job_id]": str(uuid.uuid4())})
    assert r.status_code == 200 and r.json()["data"] == []


def test_json_nested_deeper_than_the_decoder_takes_is_400(api):
    deep = b"[" * 5000 + b"]" * 5000
    body = b'{"tasks": {"a": {"operation": "import/upload", "x": ' + deep + b"}}}"
    r = api.post("/v2/jobs", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json() == {"code": "BAD_REQUEST", "message": "JSON is malformed: nested too deeply"}


def test_json_nested_as_deep_as_the_decoder_takes_is_answered_without_a_500(api):
    deep = b"[" * 900 + b"]" * 900
    body = b'{"tasks": {"a": {"operation": "import/upload", "x": ' + deep + b"}}}"
    r = api.post("/v2/jobs", content=body, headers={"content-type": "application/json"})
    assert r.status_code < 500, r.text


SIGNED_JOB_TASKS = {
    "i": {"operation": "import/url", "url": "https://example.com/a.png"},
    "e": {"operation": "export/url", "input": "i"},
}


def test_a_nul_character_in_a_signed_urls_tag_is_422_naming_the_tag(api):
    # The signed URL's job skips the API's body struct, so the check is the service's own.
    base = api.post("/v2/signed-urls", json={"name": "n"}).json()["data"]
    job = {"tasks": SIGNED_JOB_TASKS, "tag": "t\x00"}
    url = SignedUrl.sign(base["url"], base["signing_secret"], job)
    r = api.get("/v2/s/" + url.split("/v2/s/", 1)[1], headers={"authorization": ""})
    assert r.status_code == 422, r.text
    assert "tag" in r.json()["errors"], r.json()


@pytest.mark.parametrize("path", ["/v2/jobs", "/v2/webhooks"])
def test_a_nul_character_in_a_webhook_url_is_422(api, path):
    body = {"url": "https://198.51.100.7/\x00", "events": ["job.finished"]}
    if path == "/v2/jobs":
        body = {"tasks": {"a": {"operation": "import/upload"}}, "webhook_url": body["url"]}
    r = api.post(path, json=body)
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "INVALID_URL"
