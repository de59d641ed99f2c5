"""import/s3 and export/s3 over HTTP, with the suite's S3 server (Swift+s3api) as the client's
own S3 service: in the `local` deployment (private addresses allowed) files go in, are
converted and come out in another bucket, and the credentials are in no API answer; in the
`s3` deployment (private addresses refused) the loopback endpoint is refused."""

from __future__ import annotations

import io

import pyvips
from minio import Minio

from tests.e2e.conftest import task

CREDS = {"access_key_id": "AK", "secret_access_key": "SK"}


def _buckets(s3_server) -> tuple[Minio, str, str]:
    return s3_server.source_and_destination()


def _where(s3_server, bucket: str, **fields) -> dict:
    return s3_server.task_fields(bucket, session_token="session-token-e2e", **fields)


def test_s3_in_convert_s3_out_and_the_credentials_are_in_no_answer(deployment, s3_server, png_file):
    client, src, dst = _buckets(s3_server)
    data = png_file.read_bytes()
    client.put_object(src, "in/photo.png", io.BytesIO(data), len(data))
    secrets = (s3_server.secret_key, s3_server.access_key, "session-token-e2e")
    with deployment.client(deployment.key()) as api:
        created = api.post(
            "/v2/jobs",
            json={
                "tasks": {
                    "in": {"operation": "import/s3", **_where(s3_server, src, key="in/photo.png")},
                    "c": {"operation": "convert", "input": "in", "output_format": "jpg"},
                    "out": {
                        "operation": "export/s3",
                        "input": "c",
                        **_where(s3_server, dst, key_prefix="out/", acl="private"),
                    },
                }
            },
        )
        assert created.status_code == 201, created.text
        job_id = created.json()["data"]["id"]
        ended = api.get(f"/sync/v2/jobs/{job_id}")
        job = ended.json()["data"]
        answers = [created.text, ended.text, api.get(f"/v2/jobs/{job_id}").text]
        answers += [api.get(f"/v2/tasks/{t['id']}").text for t in job["tasks"]]
        answers += [api.get("/v2/tasks").text, api.get("/v2/jobs?include=tasks").text]
        single = api.post("/v2/import/s3", json=_where(s3_server, src, key="in/photo.png"))
        assert single.status_code == 201, single.text
        answers += [single.text, api.get(f"/sync/v2/tasks/{single.json()['data']['id']}").text]
    if deployment.name == "local":
        assert job["status"] == "finished", job
        out = client.get_object(dst, "out/photo.jpg").read()
        assert pyvips.Image.new_from_buffer(out, "").width == 400
        assert task(job, "out")["result"]["files"][0]["key"] == "out/photo.jpg"
    else:  # private addresses refused: the loopback endpoint is not reached
        assert (job["status"], task(job, "in")["code"]) == ("error", "URL_NOT_ALLOWED")
        assert list(client.list_objects(dst, recursive=True)) == []
    assert task(job, "in")["payload"]["bucket"] == src  # the rest of the payload is shown
    assert [s for s in (*secrets, "_sealed") if any(s in answer for answer in answers)] == []


def test_a_task_without_key_or_credentials_is_refused_at_creation(deployment):
    with deployment.client(deployment.key()) as api:
        r = api.post("/v2/import/s3", json={"bucket": "b", "region": "us-east-1"})
        assert r.status_code == 422, r.text
        errors = r.json()["errors"]
        assert {"access_key_id", "secret_access_key"} <= {k.split(".")[-1] for k in errors}
        jobs = api.post(
            "/v2/jobs",
            json={"tasks": {"in": {"operation": "import/s3", "bucket": "b", "region": "r"}}},
        )
        assert jobs.status_code == 422
        no_key = api.post("/v2/import/s3", json={"bucket": "b", "region": "r", **CREDS})
        assert no_key.status_code == 422 and "tasks.task.key" in no_key.json()["errors"]
