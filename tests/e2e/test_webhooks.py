"""Webhooks over HTTP against the deployments: /v2/webhooks and its scopes, a job made with the
official SDK delivered by the worker processes' senders to a receiver on loopback, verified
with the SDK. The `local` deployment allows private addresses, `s3` refuses them."""

from __future__ import annotations

import time
from typing import Any

import cloudconvert
import pytest

from appliance.security.keys import key_hash
from tests.harness.receiver import Receiver

ALL = "{task.read,task.write,webhook.read,webhook.write}"


@pytest.fixture
def receiver():
    r = Receiver().start()
    yield r
    r.stop()


def key_with(deployment, scopes: str) -> str:
    key = deployment.key()
    deployment.sql("UPDATE api_keys SET scopes = %s WHERE key_hash = %s", scopes, key_hash(key))
    return key


def allowed(deployment) -> bool:
    return deployment.env.get("APPLIANCE_ALLOW_PRIVATE_URLS") == "true"


def test_webhook_routes_need_the_webhook_scopes(deployment, receiver):
    body = {"url": receiver.url, "events": ["job.finished"]}
    with deployment.client(key_with(deployment, "{task.read,task.write}")) as api:
        for r in (api.get("/v2/webhooks"), api.post("/v2/webhooks", json=body)):
            assert r.status_code == 403 and r.json()["code"] == "MISSING_SCOPE"
        assert "webhook.read" in api.get("/v2/users/me/webhooks").json()["message"]
    with deployment.client(key_with(deployment, "{webhook.read}")) as api:
        assert api.get("/v2/webhooks").json()["data"] == []
        r = api.post("/v2/webhooks", json=body)
        assert r.status_code == 403 and "webhook.write" in r.json()["message"]
        assert api.get("/v2/jobs").status_code == 403  # and no task scope


def test_webhooks_are_made_listed_shown_and_deleted_per_user(deployment, receiver):
    body = {"url": receiver.url, "events": ["job.finished", "job.created"]}
    key = key_with(deployment, ALL)
    with deployment.client(key) as api:
        r = api.post("/v2/webhooks", json=body)
        if not allowed(deployment):
            assert r.status_code == 422 and r.json()["code"] == "URL_NOT_ALLOWED", r.text
            return
        assert r.status_code == 201, r.text
        hook = r.json()["data"]
        assert hook["url"] == receiver.url and hook["events"] == ["job.created", "job.finished"]
        assert len(hook["signing_secret"]) == 64 and hook["disabled"] is False
        for path in ("/v2/webhooks", "/v2/users/me/webhooks"):
            assert [h["id"] for h in api.get(path).json()["data"]] == [hook["id"]]
        shown = api.get(f"/v2/webhooks/{hook['id']}").json()["data"]
        assert shown["deliveries"] == [] and shown["signing_secret"] == hook["signing_secret"]
        bad = api.post("/v2/webhooks", json={"url": receiver.url, "events": ["job.exploded"]})
        assert bad.status_code == 422 and "events" in bad.json()["errors"]
    with deployment.client(key_with(deployment, ALL)) as other:  # another user
        assert other.get("/v2/webhooks").json()["data"] == []
        assert other.get(f"/v2/webhooks/{hook['id']}").status_code == 404
        assert other.delete(f"/v2/webhooks/{hook['id']}").status_code == 404
    with deployment.client(key) as api:
        assert api.delete(f"/v2/webhooks/{hook['id']}").status_code == 204
        assert api.get(f"/v2/webhooks/{hook['id']}").status_code == 404
        assert api.get("/v2/webhooks").json()["data"] == []


def _wait_delivered(api, job_id: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 30
    while True:
        rows = api.get("/v2/webhooks/deliveries", params={"filter[job_id]": job_id}).json()
        rows = rows["data"]
        if len(rows) == count and all(r["status"] != "pending" for r in rows):
            return rows  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, rows
        time.sleep(0.2)


def test_a_job_made_with_the_sdk_is_delivered_and_verified_with_the_sdk(
    deployment, receiver, png_file
):
    key = key_with(deployment, ALL)
    with deployment.client(key) as api:
        own_secret = api.get("/v2/webhooks/signing_secret").json()["data"]["signing_secret"]
        if allowed(deployment):
            hook = api.post("/v2/webhooks", json={"url": receiver.url, "events": ["job.created"]})
            hook = hook.json()["data"]
    cloudconvert.configure(
        api_key=key, endpoint=deployment.url, sync_endpoint=deployment.url + "/sync"
    )
    job = cloudconvert.Job.create(
        payload={
            "webhook_url": receiver.url + "?own",
            "tasks": {
                "in": {"operation": "import/upload"},
                "c": {"operation": "convert", "input": "in", "output_format": "webp"},
            },
        }
    )
    upload = cloudconvert.Task.find(id=next(t for t in job["tasks"] if t["name"] == "in")["id"])
    assert cloudconvert.Task.upload(file_name=str(png_file), task=upload) is True
    assert cloudconvert.Job.wait(id=job["id"])["status"] == "finished"
    with deployment.client(key) as api:
        if not allowed(deployment):  # the job's URL is refused when delivering
            [row] = _wait_delivered(api, job["id"], 1)
            assert (row["status"], row["event"]) == ("failed", "job.finished")
            assert "non-public" in row["last_error"] and receiver.received == []
            return
        rows = _wait_delivered(api, job["id"], 2)
    assert {(r["event"], r["status"], r["attempts"]) for r in rows} == {
        ("job.created", "delivered", 1),
        ("job.finished", "delivered", 1),
    }
    got = receiver.wait_for(2)
    for r in got:
        secret = own_secret if r.path.endswith("?own") else hook["signing_secret"]
        assert cloudconvert.Webhook.verify(
            r.body.decode(), r.headers["cloudconvert-signature"], secret
        )
    [finished] = receiver.by_event("job.finished")
    assert finished.payload["job"]["id"] == job["id"]
    assert finished.payload["job"] == cloudconvert.Job.find(id=job["id"])
    assert {r.headers["appliance-delivery-id"] for r in got} == {r["id"] for r in rows}
