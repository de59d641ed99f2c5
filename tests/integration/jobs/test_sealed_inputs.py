"""What must not rest in clear: import/url request headers (sealed until the task ends, never
shown), the fetched file (sealed in storage), and the signing secrets of webhooks, of the
user's own webhook_url deliveries and of signed URL bases (sealed columns)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid

import msgspec
import pytest

from appliance.conversions.signed_urls import SignedUrlService
from appliance.conversions.webhooks import WebhookService
from appliance.errors import Forbidden, InvalidData, PermanentError
from appliance.security.sealing import COLUMN_PREFIX, Columns
from appliance.storage import object_key
from tests.harness.origin import always, serve
from tests.integration.jobs.conftest import task

TOKEN = "Bearer s3cr3t-t0ken-of-the-user"
EVENTS = ["job.finished"]
BODY = b"\x89PNG\r\n\x1a\n" + b"private pixels " * 4000


@pytest.fixture
def settings(settings):
    return msgspec.structs.replace(settings, allow_private_urls=True)


@pytest.fixture
def origin():
    with serve(always(BODY)) as served:
        yield served


def test_import_url_headers_reach_the_origin_but_never_rest_or_show_in_clear(system, origin):
    url = origin.url("/photo.png")
    system.stop_worker()  # the task waits: its stored payload is what rests meanwhile
    job = system.create(
        {"in": {"operation": "import/url", "url": url, "headers": {"Authorization": TOKEN}}}
    )
    assert "s3cr3t" not in str(job)
    waiting = system.sql("SELECT payload::text AS p FROM tasks WHERE job_id = %s", job["id"])
    assert "s3cr3t" not in waiting[0]["p"] and "_sealed" in waiting[0]["p"]
    system.start_worker()
    job = system.wait(job["id"])
    assert job["status"] == "finished", job
    assert origin.requests[0].headers["Authorization"] == TOKEN
    ended = system.sql("SELECT payload::text AS p FROM tasks WHERE job_id = %s", job["id"])
    assert "s3cr3t" not in ended[0]["p"] and "_sealed" not in ended[0]["p"]
    stored = system.sql("SELECT sha256 FROM task_files WHERE task_id = %s", task(job, "in")["id"])
    key = object_key(stored[0]["sha256"])
    raw = b"".join(system.rt.storage.backend.iter_bytes(key))
    assert b"private pixels" not in raw
    assert b"".join(system.rt.storage.iter_bytes(key)) == BODY


def test_webhook_signing_secrets_rest_sealed_and_show_in_clear(system):
    hooks = WebhookService(system.settings, system.svc.pool, Columns(system.rt.storage.keyring))
    made = json.loads(system.call(hooks.create(system.user_id, "http://127.0.0.1:9/h", EVENTS)))
    secret = made["signing_secret"]
    assert len(secret) == 64
    rows = system.sql("SELECT signing_secret FROM webhooks WHERE id = %s", made["id"])
    assert rows[0]["signing_secret"].startswith(COLUMN_PREFIX)
    assert secret not in rows[0]["signing_secret"]
    shown = json.loads(system.call(hooks.show(system.user_id, uuid.UUID(made["id"]))))
    listed = json.loads(system.call(hooks.page(system.user_id, None, 1, 10))[0])
    assert shown["signing_secret"] == listed[0]["signing_secret"] == secret


def test_the_users_own_webhook_secret_is_made_sealed_once(system):
    hooks = WebhookService(system.settings, system.svc.pool, Columns(system.rt.storage.keyring))
    first = system.call(hooks.signing_secret(system.user_id))
    assert first == system.call(hooks.signing_secret(system.user_id))
    row = system.sql("SELECT webhook_signing_secret AS s FROM users WHERE id = %s", system.user_id)
    assert row[0]["s"].startswith(COLUMN_PREFIX) and first not in row[0]["s"]


def test_signed_url_base_secrets_rest_sealed_and_still_verify(system):
    svc = SignedUrlService(system.settings, system.svc.pool, Columns(system.rt.storage.keyring))
    made = json.loads(system.call(svc.create(system.user_id, "mine")))
    row = system.sql("SELECT signing_secret FROM signed_url_bases WHERE id = %s", made["id"])
    assert row[0]["signing_secret"].startswith(COLUMN_PREFIX)
    assert made["signing_secret"] not in row[0]["signing_secret"]
    job = base64.urlsafe_b64encode(json.dumps({"tasks": {}}).encode()).decode().rstrip("=")
    query = f"job={job}"
    url = f"{made['url']}?{query}"
    sig = hmac.new(made["signing_secret"].encode(), url.encode(), hashlib.sha256).hexdigest()
    with pytest.raises(InvalidData):  # the signature holds; the empty job is what is refused
        system.call(svc.open(uuid.UUID(made["id"]), f"{query}&s={sig}"))
    with pytest.raises(Forbidden):
        system.call(svc.open(uuid.UUID(made["id"]), f"{query}&s={'0' * 64}"))


def test_a_sealed_secret_does_not_open_as_another_users(system):
    columns = Columns(system.rt.storage.keyring)
    sealed = columns.seal(system.user_id, "webhooks.signing_secret", "s")
    other = system.sql("INSERT INTO users (email) VALUES ('o@example.test') RETURNING id")[0]["id"]
    with pytest.raises(PermanentError):
        columns.open(other, "webhooks.signing_secret", sealed)
