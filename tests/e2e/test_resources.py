"""Listing, filtering, pagination, cancel, retry, delete, formats, operations and docs over
HTTP."""

from __future__ import annotations

import re
import socket
import time

import httpx

from tests.e2e.conftest import task, upload


def _job(api, tag=None, tasks=None):
    body = {"tasks": tasks or {"up": {"operation": "import/upload"}}}
    if tag:
        body["tag"] = tag
    r = api.post("/v2/jobs", json=body)
    assert r.status_code == 201, r.text
    return r.json()["data"]


def test_jobs_list_filters_by_status_and_tag_and_paginates(deployment, png_file):
    with deployment.client(deployment.key()) as api:
        ids = [_job(api, tag="batch")["id"] for _ in range(3)]
        other = _job(api, tag="other")
        first = api.get("/v2/jobs", params={"filter[tag]": "batch", "per_page": 2}).json()
        assert [j["id"] for j in first["data"]] == ids[::-1][:2]
        assert first["links"]["next"] and first["meta"]["per_page"] == 2
        assert "tasks" not in first["data"][0]
        second = api.get(first["links"]["next"] + "&filter[tag]=batch").json()
        assert [j["id"] for j in second["data"]] == [ids[0]]
        assert second["links"]["next"] is None and second["links"]["prev"]
        upload(task(other, "up")["result"]["form"], png_file)
        api.get(f"/sync/v2/jobs/{other['id']}")
        done = api.get(
            "/v2/jobs", params={"filter[status]": "finished", "include": "tasks"}
        ).json()["data"]
        assert [j["id"] for j in done] == [other["id"]] and done[0]["tasks"]
        bad = api.get("/v2/jobs", params={"filter[status]": "nope"})
        assert bad.status_code == 422 and bad.json()["code"] == "INVALID_DATA"
        assert list(bad.json()["errors"]) == ["filter[status]"], bad.json()


def test_tasks_list_filters_by_job_and_operation(deployment):
    with deployment.client(deployment.key()) as api:
        job = _job(
            api,
            tasks={
                "up": {"operation": "import/upload"},
                "c": {"operation": "convert", "input": "up", "output_format": "png"},
            },
        )
        rows = api.get(
            "/v2/tasks", params={"filter[job_id]": job["id"], "filter[operation]": "convert"}
        ).json()["data"]
        assert [t["name"] for t in rows] == ["c"]


def test_cancel_fails_the_task_and_its_dependents(deployment):
    with deployment.client(deployment.key()) as api:
        job = _job(
            api,
            tasks={
                "up": {"operation": "import/upload"},
                "c": {"operation": "convert", "input": "up", "output_format": "png"},
            },
        )
        r = api.post(f"/v2/tasks/{task(job, 'up')['id']}/cancel")
        assert r.status_code == 200 and r.json()["data"]["code"] == "CANCELLED"
        job = api.get(f"/v2/jobs/{job['id']}").json()["data"]
        assert job["status"] == "error"
        assert task(job, "c")["code"] == "INPUT_TASK_FAILED"
        again = api.post(f"/v2/tasks/{task(job, 'up')['id']}/cancel")
        assert again.status_code == 422 and again.json()["code"] == "TASK_NOT_CANCELLABLE"


def test_retry_runs_a_failed_task_again_as_a_new_task(deployment, png_file, tmp_path):
    fake = tmp_path / "fake.png"
    fake.write_bytes(b"not a png at all" * 10)
    with deployment.client(deployment.key()) as api:
        # The import fails (bad content detected by convert); retry the convert on a new input
        job = _job(
            api,
            tasks={
                "up": {"operation": "import/upload"},
                "c": {"operation": "convert", "input": "up", "output_format": "jpg"},
            },
        )
        upload(task(job, "up")["result"]["form"], fake)
        job = api.get(f"/sync/v2/jobs/{job['id']}").json()["data"]
        assert task(job, "c")["code"] == "INVALID_INPUT_FILE"
        r = api.post(f"/v2/tasks/{task(job, 'c')['id']}/retry")
        assert r.status_code == 201, r.text
        retry = r.json()["data"]
        assert retry["retry_of_task_id"] == task(job, "c")["id"]
        retry = api.get(f"/sync/v2/tasks/{retry['id']}").json()["data"]
        assert retry["status"] == "error" and retry["code"] == "INVALID_INPUT_FILE"


def test_delete_job_removes_it_and_its_tasks(deployment):
    with deployment.client(deployment.key()) as api:
        job = _job(api)
        assert api.delete(f"/v2/jobs/{job['id']}").status_code == 204
        for path in (f"/v2/jobs/{job['id']}", f"/v2/tasks/{job['tasks'][0]['id']}"):
            gone = api.get(path)
            assert gone.status_code == 404 and gone.json()["code"] == "NOT_FOUND", path


def test_delete_task(deployment):
    with deployment.client(deployment.key()) as api:
        up = api.post("/v2/import/upload", json={}).json()["data"]
        assert api.delete(f"/v2/tasks/{up['id']}").status_code == 204
        gone = api.get(f"/v2/tasks/{up['id']}")
        assert gone.status_code == 404 and gone.json()["code"] == "NOT_FOUND"
        again = api.delete(f"/v2/tasks/{up['id']}")
        assert again.status_code == 404 and again.json()["code"] == "NOT_FOUND"


def test_formats_lists_what_the_engines_convert(deployment):
    with deployment.client(deployment.key()) as api:
        rows = api.get("/v2/convert/formats", params={"filter[input_format]": "png"}).json()
        outputs = {r["output_format"] for r in rows["data"]}
        images = {"jpg", "webp", "avif", "tiff", "gif", "bmp"}
        assert images | {"pdf"} <= outputs
        # to text: OCR (tesseract) reads the picture into txt first; documents that can hold
        # the picture are written with it, then its text (ocr-document); doc is its docx
        text = {"txt", "md", "gfm", "rst", "org", "latex"}
        documents = {"docx", "odt", "epub", "html", "rtf"}
        for r in rows["data"]:  # everything else is reached through the image's PDF
            first = r["route"][0]
            expected = ("vips", r["output_format"]) if r["output_format"] in images else None
            if r["output_format"] in text:
                expected = ("tesseract", "txt")
            if r["output_format"] in documents:
                expected = ("ocr-document", r["output_format"])
            if r["output_format"] == "doc":
                expected = ("ocr-document", "docx")
            assert (first["engine"], first["to"]) == (expected or ("image-pdf", "pdf"))
        row = rows["data"][0]
        assert (
            row["engine"] == "vips"
            and "width" in row["options"]["$defs"]["ImageOptions"]["properties"]
        )
        jpeg = api.get("/v2/convert/formats", params={"filter[output_format]": "jpeg"}).json()
        assert {r["output_format"] for r in jpeg["data"]} == {"jpg"}


def test_operations_lists_every_task_operation_with_cloudconvert_filters(deployment):
    with deployment.client(deployment.key()) as api:

        def operations(**filters):
            r = api.get("/v2/operations", params=filters)
            assert r.status_code == 200, r.text
            return r.json()["data"]

        rows = operations()
        every = {"convert", "merge", "optimize", "pdf/split-pages", "pdf/rotate-pages"}
        every |= {"thumbnail", "metadata", "capture-website", "watermark", "metadata/write"}
        every |= {"pdf/extract-pages", "pdf/a", "pdf/ocr", "pdf/encrypt", "pdf/decrypt"}
        every |= {"pdf/flatten", "pdf/embed"}
        assert {r["operation"] for r in rows} == every | {"archive"}
        assert all("options" not in r for r in rows)  # CloudConvert sends them when asked
        thumbnail_of_docx = {
            "filter[operation]": "thumbnail",
            "filter[input_format]": "DOCX",
            "filter[output_format]": "jpeg",
            "include": "options",
        }
        [docx] = operations(**thumbnail_of_docx)
        assert (docx["engine"], docx["queue"], docx["output_format"]) == (
            "libreoffice+thumbnail",
            "office",
            "jpg",
        )
        assert "width" in docx["options"]["$defs"]["ThumbnailOptions"]["properties"]
        merge = operations(**{"filter[engine]": "pdf-merge"})
        assert {(r["operation"], r["output_format"]) for r in merge} == {("merge", "pdf")}
        assert {"metadata", "archive"} <= {
            r["operation"] for r in operations(**{"filter[input_format]": "mp3"})
        }
        for unknown in ("filter[operation]", "filter[input_format]", "filter[engine]"):
            assert operations(**{unknown: "nope"}) == []

        # what it lists for thumbnail a job may ask for; a format it does not list is a 422
        thumbs = {r["input_format"] for r in operations(**{"filter[operation]": "thumbnail"})}
        named = {r["input_format"] for r in rows} - {"*"}
        for fmt, status in (("docx", 201), (sorted(named - thumbs)[0], 422)):
            r = api.post(
                "/v2/jobs",
                json={
                    "tasks": {
                        "up": {"operation": "import/upload"},
                        "t": {
                            "operation": "thumbnail",
                            "input": "up",
                            "input_format": fmt,
                            "output_format": "png",
                        },
                    }
                },
            )
            assert r.status_code == status, (fmt, r.text)
        assert list(r.json()["errors"]) == ["tasks.t.input"], r.json()


def test_openapi_docs_are_served(deployment):
    with deployment.client(None) as api:
        spec = api.get("/docs/openapi.json")
        assert spec.status_code == 200
        assert "/v2/jobs" in spec.json()["paths"]
        assert spec.json()["paths"]["/v2/operations"]["get"]["tags"] == ["formats"]
        assert api.get("/health/live").json() == {"status": "ok"}
        ready = api.get("/health/ready").json()
        assert ready["checks"] == {"postgres": "ok", "redis": "ok", "storage": "ok"}


def _raw_get(url: str, path: str) -> tuple[bytes, bytes]:
    """One GET over a fresh keep-alive connection: the response head, and what the
    connection gives after the response (b"" when the server closed it)."""
    host, port = url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(65536)
        head, body = data.split(b"\r\n\r\n", 1)
        length = int(re.search(rb"content-length: (\d+)", head, re.I)[1])
        while len(body) < length:
            body += s.recv(65536)
        s.settimeout(1.5)
        try:
            after = s.recv(100)
        except TimeoutError:
            after = b"(still open)"
    return head.lower(), after


def _until_ready_is(deployment, status: int, seconds: float = 10) -> None:
    """Every API process answers /health/ready with ``status`` (asked a few times in a row,
    as each process reads the drain file on its own)."""
    deadline = time.monotonic() + seconds
    streak = 0
    while streak < 6:
        if time.monotonic() > deadline:
            raise AssertionError(f"/health/ready never answered {status} steadily")
        streak = (
            streak + 1 if httpx.get(deployment.url + "/health/ready").status_code == status else 0
        )
        time.sleep(0.05)


def test_a_draining_api_closes_each_connection_after_its_response(deployment):
    """What a rolling upgrade relies on (deploy/pyinfra/roles/rolling.py): while the drain
    file exists, requests are still served, each connection is closed by the server after
    its response, and /health/ready says 503 draining; without it, connections stay open."""
    drain = deployment.data_dir / "drain"
    head, after = _raw_get(deployment.url, "/health/live")
    assert b"connection: close" not in head and after == b"(still open)"
    drain.touch()
    try:
        _until_ready_is(deployment, 503)  # the API looks at the file twice a second
        head, after = _raw_get(deployment.url, "/health/live")
        assert head.startswith(b"http/1.1 200") and b"connection: close" in head
        assert after == b""
        with deployment.client(deployment.key()) as api:
            assert api.get("/v2/jobs").status_code == 200
            ready = api.get("/health/ready")
            assert ready.status_code == 503 and ready.json()["failed"] == ["draining"]
    finally:
        drain.unlink()
    _until_ready_is(deployment, 200)
    head, after = _raw_get(deployment.url, "/health/ready")
    assert head.startswith(b"http/1.1 200") and after == b"(still open)"
