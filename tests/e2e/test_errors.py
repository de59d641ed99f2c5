"""Error cases a client meets, in CloudConvert's shape and with the right status."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

from tests.e2e.conftest import UPLOAD_LIMIT, base64_import, run_job, task, upload

# Both deployments take files up to 2 MB here (the s3 one always does): the limit tests
# send just over it, never 100 MB.
DEPLOYMENT_ENV = {"APPLIANCE_MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT)}


def test_missing_or_bad_key_is_401(deployment):
    for key in (None, "apl_not-a-real-key"):
        with deployment.client(key) as api:
            r = api.get("/v2/jobs")
            assert r.status_code == 401
            assert r.json()["code"] == "UNAUTHENTICATED"


def _alices_jobs(alice, png_file) -> tuple[dict, dict]:
    """A finished job (a PNG converted to GIF) and one whose upload waits."""
    done = run_job(
        alice,
        {
            "in": base64_import("photo.png", png_file.read_bytes()),
            "c": {"operation": "convert", "input": "in", "output_format": "gif"},
        },
    )
    assert done["status"] == "finished", done
    waiting = alice.post("/v2/jobs", json={"tasks": {"up": {"operation": "import/upload"}}})
    return done, waiting.json()["data"]


def _not_found(r: httpx.Response) -> bool:
    return r.status_code == 404 and r.json()["code"] == "NOT_FOUND"


def _view(job: dict) -> list[tuple]:
    """What a job's owner sees of it: each task's id, status and files."""
    return sorted(
        (t["id"], t["status"], str((t.get("result") or {}).get("files"))) for t in job["tasks"]
    )


def test_another_user_can_neither_see_wait_on_nor_change_a_job_or_task(deployment, png_file):
    """Every route that names a job or task by id, read, sync wait, cancel, retry and delete,
    is 404 for another user (at once: a wait does not block on another user's job), and the
    owner reads everything back unchanged: nothing was cancelled, retried or deleted."""
    with deployment.client(deployment.key()) as alice, deployment.client(deployment.key()) as bob:
        done, waiting = _alices_jobs(alice, png_file)
        converted, pending = task(done, "c")["id"], task(waiting, "up")["id"]
        before = {j["id"]: _view(alice.get(f"/v2/jobs/{j['id']}").json()["data"])
                  for j in (done, waiting)}  # fmt: skip
        reads = [
            f"/v2/jobs/{waiting['id']}",
            f"/v2/tasks/{pending}",
            f"/v2/jobs/{waiting['id']}/wait",
            f"/v2/tasks/{pending}/wait",
            f"/sync/v2/jobs/{waiting['id']}",
            f"/sync/v2/tasks/{pending}",
        ]
        for path in reads:
            started = time.monotonic()
            assert _not_found(bob.get(path)), path
            assert time.monotonic() - started < 5, path  # no wait on another user's job
        assert _not_found(bob.post(f"/v2/tasks/{pending}/cancel"))
        assert _not_found(bob.post(f"/v2/tasks/{converted}/retry"))
        assert _not_found(bob.delete(f"/v2/tasks/{converted}"))
        assert _not_found(bob.delete(f"/v2/jobs/{done['id']}"))
        assert _not_found(bob.delete(f"/v2/jobs/{waiting['id']}"))
        assert bob.get("/v2/jobs").json()["data"] == []
        assert bob.get("/v2/tasks").json()["data"] == []
        for job in (done, waiting):  # the owner's view is as it was
            assert _view(alice.get(f"/v2/jobs/{job['id']}").json()["data"]) == before[job["id"]]
        # and what the routes do for their owner, so the 404s above are about the user
        assert alice.post(f"/v2/tasks/{pending}/cancel").json()["data"]["status"] == "error"
        assert alice.post(f"/v2/tasks/{converted}/retry").status_code == 201
        assert alice.delete(f"/v2/jobs/{waiting['id']}").status_code == 204


@pytest.mark.parametrize(
    ("operation", "fields"),
    [
        ("convert", {"output_format": "webp"}),
        ("merge", {"output_format": "pdf"}),
        ("archive", {"output_format": "zip"}),
    ],
)
def test_another_users_task_is_no_input_in_a_job_or_a_single_task(
    deployment, png_file, operation, fields
):
    with deployment.client(deployment.key()) as alice, deployment.client(deployment.key()) as bob:
        done, _ = _alices_jobs(alice, png_file)
        theirs = task(done, "c")["id"]
        job = {"tasks": {"x": {"operation": operation, "input": [theirs], **fields}}}
        r = bob.post("/v2/jobs", json=job)
        assert r.status_code == 422 and r.json()["code"] == "INVALID_DATA", r.text
        assert list(r.json()["errors"]) == ["tasks.x.input"], r.json()
        r = bob.post(f"/v2/{operation}", json={"input": [theirs], **fields})
        assert r.status_code == 422 and list(r.json()["errors"]) == ["tasks.task.input"], r.text
        assert bob.get("/v2/tasks").json()["data"] == []
        # the owner may use it: the refusal is about whose task it is
        assert alice.post("/v2/jobs", json=job).status_code == 201
        assert alice.post(f"/v2/{operation}", json={"input": [theirs], **fields}).status_code == 201


@pytest.mark.parametrize(
    ("tasks", "field"),
    [
        ({"a": {"operation": "import/ftp"}}, "tasks.a.operation"),
        ({"c": {"operation": "convert", "input": "nope", "output_format": "png"}}, "tasks.c.input"),
        (
            {
                "a": {"operation": "convert", "input": "b", "output_format": "png"},
                "b": {"operation": "convert", "input": "a", "output_format": "jpg"},
            },
            "tasks.a.input",
        ),
        (
            {
                "i": {"operation": "import/url", "url": "https://example.com/a.png"},
                "c": {"operation": "convert", "input": "i", "output_format": "mp4"},
            },
            "tasks.c.output_format",
        ),
    ],
)
def test_invalid_task_graph_is_422_naming_the_field(deployment, tasks, field):
    with deployment.client(deployment.key()) as api:
        r = api.post("/v2/jobs", json={"tasks": tasks})
        assert r.status_code == 422, r.text
        body = r.json()
        assert body["code"] == "INVALID_DATA"
        assert list(body["errors"]) == [field], body


def test_malformed_body_is_422(deployment):
    with deployment.client(deployment.key()) as api:
        r = api.post("/v2/jobs", json={"tag": "no tasks"})
        assert r.status_code == 422 and r.json()["code"] == "INVALID_DATA"
        assert r.json()["errors"] == {"data": ["Object missing required field `tasks`"]}


def test_unknown_ids_are_404_in_cloudconvert_shape(deployment):
    with deployment.client(deployment.key()) as api:
        r = api.get(f"/v2/jobs/{uuid.uuid4()}")
        assert r.status_code == 404 and r.json()["code"] == "NOT_FOUND"


def _objects(deployment):
    if deployment.name == "local":
        root = deployment.data_dir / "files" / "sha256"
        return sorted(p.name for p in root.rglob("*") if p.is_file()) if root.exists() else []
    import minio

    env = deployment.env
    client = minio.Minio(
        env["APPLIANCE_S3_ENDPOINT"],
        env["APPLIANCE_S3_ACCESS_KEY"],
        env["APPLIANCE_S3_SECRET_KEY"],
        secure=False,
        region=env["APPLIANCE_S3_REGION"],
    )
    return sorted(
        o.object_name for o in client.list_objects(env["APPLIANCE_S3_BUCKET"], recursive=True)
    )


def test_upload_over_limit_is_rejected_with_413_and_nothing_stored(deployment, tmp_path):
    limit = int(deployment.env["APPLIANCE_MAX_UPLOAD_BYTES"])
    big = tmp_path / "big.png"
    with open(big, "wb") as fh:
        fh.write(b"\x89PNG\r\n\x1a\n")
        fh.truncate(limit + 1)
    before = _objects(deployment)
    with deployment.client(deployment.key()) as api:
        job = api.post("/v2/jobs", json={"tasks": {"up": {"operation": "import/upload"}}})
        job = job.json()["data"]
        try:
            r = upload(task(job, "up")["result"]["form"], big)
            assert r.status_code == 413, r.text
            assert r.json()["code"] == "FILE_TOO_LARGE"
        except httpx.RemoteProtocolError:
            pass  # the server may close the connection while the client still sends
        assert _objects(deployment) == before
        spool = deployment.data_dir / "tmp"
        assert not spool.exists() or list(spool.iterdir()) == []
        up = api.get(f"/v2/jobs/{job['id']}").json()["data"]["tasks"][0]
        assert up["status"] == "waiting"  # the client may try again with a smaller file


def test_base64_over_the_limit_is_413_and_at_the_limit_accepted(deployment):
    limit = int(deployment.env["APPLIANCE_MAX_UPLOAD_BYTES"])
    with deployment.client(deployment.key()) as api:

        def send(size: int) -> httpx.Response:
            tasks = {"b": base64_import("x.png", b"\x89PNG\r\n\x1a\n" + b"x" * (size - 8))}
            return api.post("/v2/jobs", json={"tasks": tasks})

        r = send(limit + 1)
        assert r.status_code == 413 and r.json()["code"] == "FILE_TOO_LARGE", r.text
        assert send(limit).status_code == 201


def test_upload_with_a_bad_signature_is_refused(deployment, png_file):
    with deployment.client(deployment.key()) as api:
        job = api.post("/v2/jobs", json={"tasks": {"up": {"operation": "import/upload"}}})
        form = task(job.json()["data"], "up")["result"]["form"]
        form["parameters"]["signature"] = "0" * 64
        r = upload(form, png_file)
        assert r.status_code == 404 and r.json()["code"] == "INVALID_SIGNATURE"


def test_second_upload_to_the_same_task_is_refused(deployment, png_file):
    with deployment.client(deployment.key()) as api:
        job = api.post("/v2/jobs", json={"tasks": {"up": {"operation": "import/upload"}}})
        form = task(job.json()["data"], "up")["result"]["form"]
        assert upload(form, png_file).status_code == 201
        r = upload(form, png_file)
        assert r.status_code == 422 and r.json()["code"] == "TASK_NOT_WAITING"


def test_tampered_download_url_is_refused(deployment, png_file):
    with deployment.client(deployment.key()) as api:
        job = api.post(
            "/v2/jobs",
            json={
                "tasks": {
                    "up": {"operation": "import/upload"},
                    "e": {"operation": "export/url", "input": "up"},
                }
            },
        ).json()["data"]
        upload(task(job, "up")["result"]["form"], png_file)
        job = api.get(f"/sync/v2/jobs/{job['id']}").json()["data"]
        url = task(job, "e")["result"]["files"][0]["url"]
        assert httpx.get(url).status_code == 200
        # Files are stored encrypted (the default), on S3 too: downloads go through the API's
        # own signed route, which decrypts, never a presigned S3 URL to ciphertext.
        assert url.startswith(deployment.url + "/v2/")
        tampered = httpx.get(url.replace("photo.png", "other.png"))
        assert tampered.status_code == 404 and tampered.json()["code"] == "INVALID_SIGNATURE"


def test_import_url_to_a_private_address_fails_unless_allowed(deployment, png_file):
    import http.server
    import threading

    class H(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(png_file.parent), **kw)

        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/photo.png"
        with deployment.client(deployment.key()) as api:
            job = api.post(
                "/v2/jobs",
                json={
                    "tasks": {
                        "i": {"operation": "import/url", "url": url},
                        "c": {"operation": "convert", "input": "i", "output_format": "avif"},
                    }
                },
            )
            assert job.status_code == 201, job.text
            job = api.get(f"/sync/v2/jobs/{job.json()['data']['id']}").json()["data"]
    finally:
        httpd.shutdown()
    if deployment.env.get("APPLIANCE_ALLOW_PRIVATE_URLS") == "true":
        assert job["status"] == "finished", job
        assert task(job, "c")["result"]["files"][0]["filename"] == "photo.avif"
    else:
        assert job["status"] == "error"
        assert task(job, "i")["code"] == "URL_NOT_ALLOWED"


def test_key_without_the_needed_scope_is_403(deployment):
    key = deployment.key()
    from appliance.security.keys import key_hash

    deployment.sql("UPDATE api_keys SET scopes = '{task.read}' WHERE key_hash = %s", key_hash(key))
    with deployment.client(key) as api:
        assert api.get("/v2/jobs").status_code == 200
        r = api.post("/v2/jobs", json={"tasks": {"up": {"operation": "import/upload"}}})
        assert r.status_code == 403 and r.json()["code"] == "MISSING_SCOPE"
        assert "task.write" in r.json()["message"]


@pytest.mark.parametrize("route", ["/v2/jobs", "/v2/tasks"])
def test_a_page_past_any_list_is_422_not_500(deployment, route):
    with deployment.client(deployment.key()) as api:
        r = api.get(route, params={"page": 10**17})
        assert r.status_code == 422, r.text
        assert r.json()["code"] == "INVALID_DATA"
        assert api.get(route, params={"page": 1_000_000}).status_code == 200


def test_an_import_url_that_does_not_parse_is_422_not_500(deployment):
    with deployment.client(deployment.key()) as api:
        for url in ("http://[::1", "http://[not-an-ip]/x", "http://example.com:99999/"):
            r = api.post("/v2/import/url", json={"url": url})
            assert r.status_code == 422, (url, r.text)
            assert "tasks.task.url" in r.json()["errors"], r.json()


def test_an_unsigned_upload_learns_nothing_of_whether_the_task_exists(deployment, png_file):
    with deployment.client(deployment.key()) as api:
        job = api.post("/v2/jobs", json={"tasks": {"up": {"operation": "import/upload"}}})
        form = task(job.json()["data"], "up")["result"]["form"]
    form["parameters"]["signature"] = "0" * 64
    existing = upload(form, png_file)
    form["url"] = form["url"].rsplit("/", 1)[0] + f"/{uuid.uuid4()}"
    missing = upload(form, png_file)
    assert (existing.status_code, existing.json()) == (missing.status_code, missing.json())


def test_an_address_that_keeps_sending_bad_keys_is_throttled_before_any_lookup(deployment):
    attacker = {"X-Forwarded-For": f"198.51.100.{uuid.uuid4().int % 250 + 1}"}
    with deployment.client("apl_wrong") as api:
        answers = []
        while len(answers) < 41 and (not answers or answers[-1].status_code == 401):
            answers.append(api.get("/v2/jobs", headers=attacker))
    # 20 a minute, counted in fixed windows: a run that straddles two may see up to 40 401s
    refused = answers[-1]
    assert 20 <= len(answers) - 1 <= 40 and {r.status_code for r in answers[:-1]} == {401}
    assert refused.status_code == 429 and refused.json()["code"] == "TOO_MANY_REQUESTS"
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["RateLimit-Policy"] == '"auth-failures";q=20;w=60'
    assert refused.headers["RateLimit"].startswith('"auth-failures";r=0;')
    with deployment.client(deployment.key()) as api:  # another address is not concerned
        other = {"X-Forwarded-For": "203.0.113.77"}
        assert api.get("/v2/jobs", headers=other).status_code == 200
