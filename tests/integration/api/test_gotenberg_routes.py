"""Gotenberg's routes in-process on the harness's Postgres, Redis and storage, no workers:
keys (bearer and basic), Gotenberg's error shape, /health and /version, Gotenberg-Version on
the answers whose key passed, the job a form makes (its imports given their files, its tag),
webhook headers checked and sealed into the job, and routes whose operation is not enabled
answering 501. Conversions themselves run in
tests/e2e/test_gotenberg.py, with workers."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import msgspec
import pytest
from litestar import Litestar
from litestar.testing import TestClient

from appliance.api.app import create_app
from appliance.conversions.gotenberg import HOOK_COLUMN, HOOK_TAG, VERSION, Hook
from appliance.conversions.operations.enabled import OPERATIONS
from appliance.jobs.broker import dramatiq_dispatcher
from appliance.security.sealing import Columns
from tests.conftest import make_settings

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
SHOWN = "gotenberg-version"  # on the answers of requests whose key passed, and only there


@pytest.fixture
def client(app: Litestar) -> TestClient:
    with TestClient(app, timeout=60) as c:
        yield c


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_health_answers_gotenberg_s_shape_without_a_key(client):
    r = client.get("/health")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "up"
    assert body["details"]["libreoffice"]["status"] == "up"
    assert body["details"]["postgres"]["timestamp"].endswith("Z")
    assert SHOWN not in r.headers  # it asks for no key: anyone may ask it
    head = client.head("/health")
    assert head.status_code == 200 and SHOWN not in head.headers


def test_version_needs_a_key_bearer_or_basic(client, api_key):
    anonymous = client.get("/version")
    assert anonymous.status_code == 401 and SHOWN not in anonymous.headers
    assert client.get("/version", headers=bearer(api_key)).status_code == 200
    basic = httpx.BasicAuth("anyone", api_key)
    assert client.get("/version", auth=basic).status_code == 200
    refused = client.get("/version", auth=httpx.BasicAuth("anyone", "wrong"))
    assert refused.status_code == 401 and refused.text == "Unauthorized"
    assert SHOWN not in refused.headers
    assert refused.headers["www-authenticate"].startswith("Basic")
    assert refused.headers["content-type"].startswith("text/plain")


def test_version_names_gotenberg_9_as_plain_text_with_the_trace(client, api_key):
    r = client.get("/version", headers={**bearer(api_key), "Gotenberg-Trace": "v-1"})
    assert r.text == "9.0.0-appliance"  # Gotenberg's body: the version alone, no newline
    assert r.headers["content-type"].lower() == "text/plain; charset=utf-8"
    assert r.headers["gotenberg-trace"] == "v-1"
    assert r.headers[SHOWN] == r.text == VERSION  # one value, the header's and the body's


def test_errors_carry_the_trace_asked_for_or_a_new_one(client, api_key):
    url = "/forms/pdfengines/merge"
    r = client.post(
        url, files={"a.txt": ("a.txt", b"x")}, headers={**bearer(api_key), "Gotenberg-Trace": "t1"}
    )
    assert r.status_code == 400 and r.headers["gotenberg-trace"] == "t1"
    assert r.headers[SHOWN] == VERSION
    assert r.text == "Invalid form data: no form file found for extensions: [.pdf]"
    anonymous = client.post(url, files={"a.txt": ("a.txt", b"x")})
    assert len(anonymous.headers["gotenberg-trace"]) == 36 and SHOWN not in anonymous.headers


def test_a_body_that_is_not_a_form_is_415(client, api_key):
    r = client.post("/forms/pdfengines/merge", json={}, headers=bearer(api_key))
    assert r.status_code == 415 and "multipart/form-data" in r.text
    assert r.headers[SHOWN] == VERSION


def test_an_address_past_its_failed_keys_hears_no_version(
    postgres_url, redis_url, data_dir, api_key
):
    """Its 429 comes before any key is read: the version stays hidden as from a 401."""
    settings = make_settings(
        {
            "database_url": postgres_url,
            "redis_url": redis_url,
            "data_dir": str(data_dir),
            "auth_failures_per_minute": "1",
        }
    )
    with TestClient(create_app(dramatiq_dispatcher, settings), timeout=60) as client:
        for _ in range(3):
            client.get("/version", headers=bearer("wrong"))
        throttled = client.get("/version", headers=bearer(api_key))
    assert throttled.status_code == 429 and SHOWN not in throttled.headers


def test_the_form_makes_a_job_whose_imports_hold_its_files(client, api_key):
    """No worker runs here: the answer is the time limit's 503, and the job is there."""
    files = [("files", ("2_b.pdf", PDF)), ("files", ("1_a.pdf", PDF))]
    r = client.post("/forms/pdfengines/merge", files=files, headers=bearer(api_key))
    assert r.status_code == 503 and "time limit" in r.text
    assert r.headers[SHOWN] == VERSION
    jobs = client.get("/v2/jobs?filter[tag]=gotenberg&include=tasks", headers=bearer(api_key))
    assert SHOWN not in jobs.headers  # CloudConvert's API is not Gotenberg's
    (job,) = jobs.json()["data"]
    imports = [t for t in job["tasks"] if t["operation"] == "import/upload"]
    assert [t["status"] for t in imports] == ["finished", "finished"]
    # Gotenberg's order: by the number the names start with
    assert [t["result"]["files"][0]["filename"] for t in imports] == ["1_a.pdf", "2_b.pdf"]
    merge = next(t for t in job["tasks"] if t["operation"] == "merge")
    assert merge["payload"]["input"] == ["file-0", "file-1"]


@pytest.mark.parametrize(
    ("route", "fields", "needs"),
    [
        ("pdfengines/flatten", {}, "pdf/flatten"),
        ("pdfengines/convert", {"pdfa": "PDF/A-1b"}, "pdf/a"),
        ("pdfengines/encrypt", {"userPassword": "x"}, "pdf/encrypt"),
        ("pdfengines/metadata/write", {"metadata": '{"Author": "me"}'}, "metadata/write"),
        ("pdfengines/merge", {"pdfa": "PDF/A-3b"}, "pdf/a"),
        ("pdfengines/split", {"splitMode": "pages", "splitSpan": "1-2"}, "pdf/extract-pages"),
        ("chromium/convert/url", {"url": "https://example.com"}, "capture-website"),
        ("chromium/screenshot/url", {"url": "https://example.com"}, "capture-website"),
    ],
)
def test_a_route_runs_once_its_operation_is_enabled_and_is_a_501_naming_it_before(
    client, api_key, route, fields, needs
):
    r = client.post(
        f"/forms/{route}", data=fields, files={"a.pdf": ("a.pdf", PDF)}, headers=bearer(api_key)
    )
    jobs = client.get("/v2/jobs", headers=bearer(api_key)).json()["data"]
    if needs in OPERATIONS:  # no worker runs here: the job is made, the wait times out
        assert r.status_code == 503 and "time limit" in r.text, r.text
        assert len(jobs) == 1
        return
    assert r.status_code == 501, r.text
    assert r.text.startswith("Not available on this appliance") and needs in r.text
    assert r.headers[SHOWN] == VERSION
    assert jobs == []


def test_the_embed_route_makes_a_pdf_embed_task_of_its_embeds(client, api_key):
    files = [("files", ("a.pdf", PDF)), ("embeds", ("note.txt", b"a note"))]
    r = client.post("/forms/pdfengines/embed", files=files, headers=bearer(api_key))
    assert r.status_code == 503 and "time limit" in r.text, r.text  # no worker runs here
    jobs = client.get("/v2/jobs?include=tasks", headers=bearer(api_key)).json()["data"]
    (job,) = jobs
    embed = next(t for t in job["tasks"] if t["operation"] == "pdf/embed")
    imports = {t["name"]: t for t in job["tasks"] if t["operation"] == "import/upload"}
    (attached,) = embed["payload"]["attachments"]
    assert imports[attached]["result"]["files"][0]["filename"] == "note.txt"
    without = client.post(
        "/forms/pdfengines/embed", files={"a.pdf": ("a.pdf", PDF)}, headers=bearer(api_key)
    )
    assert without.status_code == 400 and "'embeds'" in without.text


def test_chromium_html_runs_on_the_chromium_engine_or_is_a_501(client, api_key):
    files = {"index.html": ("index.html", b"<h1>hi</h1>")}
    r = client.post("/forms/chromium/convert/html", files=files, headers=bearer(api_key))
    if client.app.state.services.jobs.registry.has("chromium"):
        assert r.status_code == 503 and "time limit" in r.text, r.text
    else:
        assert r.status_code == 501 and "Chromium engine" in r.text


def test_webhook_headers_are_checked_as_gotenberg_checks_them(client, api_key):
    url = "/forms/pdfengines/merge"
    hook = {**bearer(api_key), "Gotenberg-Webhook-Url": "http://127.0.0.1:9/hook"}
    r = client.post(url, files={"a.pdf": ("a.pdf", PDF)}, headers=hook)
    assert r.status_code == 400 and "Gotenberg-Webhook-Error-Url" in r.text
    hook["Gotenberg-Webhook-Error-Url"] = "http://127.0.0.1:9/error"
    r = client.post(
        url, files={"a.pdf": ("a.pdf", PDF)}, headers={**hook, "Gotenberg-Webhook-Method": "GET"}
    )
    assert r.status_code == 400 and "'GET'" in r.text
    r = client.post(
        url, files={"a.pdf": ("a.pdf", PDF)}, headers=hook
    )  # loopback: the guard refuses
    assert r.status_code == 403 and r.text == "Forbidden" and SHOWN not in r.headers
    # the events URL may stand in for the error URL; it is checked as the others are
    del hook["Gotenberg-Webhook-Error-Url"]
    events = {**hook, "Gotenberg-Webhook-Events-Url": "ftp://example.com/events"}
    r = client.post(url, files={"a.pdf": ("a.pdf", PDF)}, headers=events)
    assert r.status_code == 400 and "Invalid 'Gotenberg-Webhook-Events-Url'" in r.text
    # a public hook (an address literal: nothing is sent before the job ends), a private
    # events URL: refused before any job is made
    events["Gotenberg-Webhook-Url"] = "http://8.8.8.8/hook"
    events["Gotenberg-Webhook-Events-Url"] = "http://127.0.0.1:9/events"
    r = client.post(url, files={"a.pdf": ("a.pdf", PDF)}, headers=events)
    assert r.status_code == 403 and r.text == "Forbidden"


@pytest.fixture
def private_ok(postgres_url, redis_url, data_dir) -> Litestar:
    settings = make_settings(
        {
            "database_url": postgres_url,
            "redis_url": redis_url,
            "data_dir": str(data_dir),
            "allow_private_urls": "true",
            "requests_per_minute_per_address": "0",
            "requests_per_minute_per_key": "0",
            "conversions_per_minute_per_address": "0",
            "auth_failures_per_minute": "0",
        }
    )
    return create_app(dramatiq_dispatcher, settings)


def test_a_webhook_answers_204_and_seals_its_request_into_the_job(private_ok, api_key):
    headers = {
        **bearer(api_key),
        "Gotenberg-Webhook-Url": "http://127.0.0.1:9/hook",
        "Gotenberg-Webhook-Error-Url": "http://127.0.0.1:9/error",
        "Gotenberg-Webhook-Method": "patch",
        "Gotenberg-Webhook-Extra-Http-Headers": '{"X-Token": "secret-token"}',
        "Gotenberg-Output-Filename": "out",
        "Gotenberg-Trace": "t-hook",
    }
    with TestClient(private_ok, timeout=60) as client:
        r = client.post("/forms/pdfengines/merge", files={"a.pdf": ("a.pdf", PDF)}, headers=headers)
        assert r.status_code == 204 and r.headers["gotenberg-trace"] == "t-hook"
        assert r.headers[SHOWN] == VERSION
        (job,) = client.get("/v2/jobs", headers=bearer(api_key)).json()["data"]
        assert job["tag"].startswith(HOOK_TAG) and "secret-token" not in job["tag"]
        storage = private_ok.state.services.jobs.storage
        shown = client.get(f"/v2/jobs/{job['id']}", headers=bearer(api_key)).json()["data"]
        owner = shown["tasks"][0]["user_id"]
    sealed = job["tag"][len(HOOK_TAG) :]
    opened = Columns(storage.keyring).open(uuid.UUID(owner), HOOK_COLUMN, sealed)
    hook = msgspec.json.decode(opened, type=Hook)
    assert (hook.method, hook.error_method) == ("PATCH", "POST")
    assert hook.extra_headers == {"X-Token": "secret-token"} and hook.last == "merge"
    assert hook.output_filename == "out" and hook.trace == "t-hook"


def test_metadata_read_cannot_go_to_a_webhook(private_ok, api_key):
    headers = {
        **bearer(api_key),
        "Gotenberg-Webhook-Url": "http://127.0.0.1:9/hook",
        "Gotenberg-Webhook-Error-Url": "http://127.0.0.1:9/error",
    }
    with TestClient(private_ok, timeout=60) as client:
        r = client.post(
            "/forms/pdfengines/metadata/read", files={"a.pdf": ("a.pdf", PDF)}, headers=headers
        )
    assert r.status_code == 400 and "output files" in r.text


def test_a_file_past_the_upload_limit_is_413(tmp_path: Path, postgres_url, redis_url, api_key):
    settings = make_settings(
        {
            "database_url": postgres_url,
            "redis_url": redis_url,
            "data_dir": str(tmp_path),
            "max_upload_bytes": "1000",
            "auth_failures_per_minute": "0",
        }
    )
    with TestClient(create_app(dramatiq_dispatcher, settings), timeout=60) as client:
        files = {"a.pdf": ("a.pdf", PDF + b"x" * 2000)}
        r = client.post("/forms/pdfengines/merge", files=files, headers=bearer(api_key))
        assert r.status_code == 413 and "size limit" in r.text
        assert r.headers[SHOWN] == VERSION
        assert client.get("/v2/jobs", headers=bearer(api_key)).json()["data"] == []
