"""Gotenberg 9's routes in-process on the harness's Postgres, Redis and storage, no workers:
/forms/pdf/* and ``stages`` make jobs whose tasks are the stages in order (their imports given
their files, a stamp's image among them), malformed stages answer 400 and unavailable ops
501 in Gotenberg's plain-text shape with no job made, Gotenberg 8's fields on a Gotenberg 9
request answer Gotenberg 9's message, and Gotenberg 8's paths are still there. Conversions
themselves run in tests/e2e/test_gotenberg9.py, with workers."""

from __future__ import annotations

import io
import json

import pytest
from litestar import Litestar
from litestar.testing import TestClient
from PIL import Image

from appliance.api.app import create_app
from appliance.conversions.gotenberg import VERSION
from appliance.jobs.broker import dramatiq_dispatcher
from tests.conftest import make_settings

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (4, 4), (200, 0, 0)).save(out, "PNG")
    return out.getvalue()


@pytest.fixture
def client(app: Litestar) -> TestClient:
    with TestClient(app, timeout=60) as c:
        yield c


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def jobs_of(client: TestClient, key: str) -> list[dict]:
    r = client.get("/v2/jobs?filter[tag]=gotenberg&include=tasks", headers=bearer(key))
    return r.json()["data"]


def test_pipe_makes_a_job_of_the_stages_in_their_order(client, api_key):
    """No worker runs here: the answer is the time limit's 503, and the job is there."""
    stages = [
        {"op": "merge"},
        {"op": "stamp-image", "image": "logo.png", "x": 10, "y": 10},
        {"op": "rotate", "angle": 90},
    ]
    files = [
        ("files", ("2_b.pdf", PDF)),
        ("files", ("1_a.pdf", PDF)),
        ("files", ("logo.png", png())),
    ]
    r = client.post(
        "/forms/pdf/pipe",
        data={"stages": json.dumps(stages)},
        files=files,
        headers={**bearer(api_key), "Gotenberg-Trace": "t9"},
    )
    assert r.status_code == 503 and "time limit" in r.text, r.text
    assert r.headers["gotenberg-trace"] == "t9"
    (job,) = jobs_of(client, api_key)
    tasks = {t["name"]: t for t in job["tasks"]}
    imports = [t for t in job["tasks"] if t["operation"] == "import/upload"]
    assert sorted(t["result"]["files"][0]["filename"] for t in imports) == [
        "1_a.pdf", "2_b.pdf", "logo.png"
    ]  # fmt: skip
    assert all(t["status"] == "finished" for t in imports)
    assert [tasks[f"stage-{i}"]["operation"] for i in (1, 2, 3)] == [
        "merge", "watermark", "pdf/rotate-pages"
    ]  # fmt: skip
    assert tasks["stage-1"]["payload"]["input"] == ["file-0", "file-1"]
    assert tasks["stage-2"]["payload"]["image"] == "file-2"
    assert tasks["stage-3"]["payload"]["absolute"] is True


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        ("[", "Invalid form data: form field 'stages' is invalid ("),
        ('[{"op": "fold"}]', "Invalid form data: form field 'stages' is invalid (stage 1:"
                             " unknown op 'fold')"),
        ('[{"op": "rotate"}]', "Invalid form data: stage 1 ('rotate') field 'angle' is"
                               " required"),
    ],
)  # fmt: skip
def test_malformed_stages_are_a_plain_text_400_and_make_no_job(client, api_key, stages, message):
    r = client.post(
        "/forms/pdf/pipe",
        data={"stages": stages},
        files={"a.pdf": ("a.pdf", PDF)},
        headers=bearer(api_key),
    )
    assert r.status_code == 400 and r.text.startswith(message), r.text
    assert r.headers["content-type"].startswith("text/plain")
    assert r.headers["gotenberg-version"] == VERSION
    assert jobs_of(client, api_key) == []


@pytest.mark.parametrize(
    ("path", "data", "named"),
    [
        ("pdf/pipe", {"stages": '[{"op": "merge"}, {"op": "sign"}]'}, "the 'sign' stage"),
        ("pdf/redact", {}, "the 'redact' stage"),
        ("pdf/validate", {}, "/forms/pdf/validate"),
        ("pdf/remediate", {"profile": "PDF/UA-1"}, "remediating to PDF/UA-1"),
        ("libreoffice/convert", {"stages": '[{"op": "autotag"}]'}, "the 'autotag' stage"),
    ],
)
def test_what_nothing_here_does_is_a_501_naming_it_and_makes_no_job(
    client, api_key, path, data, named
):
    files = {"a.pdf": ("a.pdf", PDF), "a.docx": ("a.docx", b"PK\x03\x04")}
    r = client.post(f"/forms/{path}", data=data, files=files, headers=bearer(api_key))
    assert r.status_code == 501, r.text
    assert r.text.startswith("Not available on this appliance") and named in r.text
    assert jobs_of(client, api_key) == []


def test_gotenberg_8_fields_on_gotenberg_9_requests_answer_gotenberg_9_s_message(client, api_key):
    r = client.post(
        "/forms/pdf/merge",
        data={"metadata": '{"Author": "me"}'},
        files={"a.pdf": ("a.pdf", PDF)},
        headers=bearer(api_key),
    )
    assert r.status_code == 400
    assert r.text == (
        "Invalid form data: form field 'metadata' is unknown to this route; Gotenberg 9 moved"
        ' it to a stage: add {"op":"set-metadata"} to \'stages\''
    )
    r = client.post(
        "/forms/chromium/convert/html",
        data={"stages": '[{"op": "optimize"}]', "generateDocumentOutline": "true"},
        files={"index.html": ("index.html", b"<h1>hi</h1>")},
        headers=bearer(api_key),
    )
    assert r.status_code == 400 and r.text.endswith("Gotenberg 9 renamed it 'nativeBookmarks'")


def test_gotenberg_8_paths_still_answer_with_gotenberg_8_s_fields(client, api_key):
    r = client.post(
        "/forms/pdfengines/split",
        data={"splitMode": "intervals", "splitSpan": "1"},
        files={"a.pdf": ("a.pdf", PDF)},
        headers=bearer(api_key),
    )
    assert r.status_code == 503 and "time limit" in r.text, r.text
    (job,) = jobs_of(client, api_key)
    assert "pdf/split-pages" in [t["operation"] for t in job["tasks"]]


@pytest.fixture
def private_ok(postgres_url, redis_url, data_dir) -> Litestar:
    """Webhooks to loopback allowed, so a refusal is the route's, not the address guard's."""
    settings = make_settings(
        {
            "database_url": postgres_url,
            "redis_url": redis_url,
            "data_dir": str(data_dir),
            "allow_private_urls": "true",
            "auth_failures_per_minute": "0",
        }
    )
    return create_app(dramatiq_dispatcher, settings)


def test_the_metadata_route_answers_json_so_it_cannot_go_to_a_webhook(private_ok, api_key):
    headers = {
        **bearer(api_key),
        "Gotenberg-Webhook-Url": "http://127.0.0.1:9/hook",
        "Gotenberg-Webhook-Error-Url": "http://127.0.0.1:9/error",
    }
    with TestClient(private_ok, timeout=60) as client:
        r = client.post("/forms/pdf/metadata", files={"a.pdf": ("a.pdf", PDF)}, headers=headers)
        assert r.status_code == 400 and "output files" in r.text
        assert jobs_of(client, api_key) == []
