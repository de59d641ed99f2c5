"""Webhooks end to end in-process: the job system, the outbox in Postgres, the sender threads
of a worker process, and a real HTTP receiver on loopback (allowed here but where a test
says otherwise). Retries are made short by the settings."""

from __future__ import annotations

import base64
import dataclasses
import json
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cloudconvert
import msgspec
import pytest

from appliance import local_services
from appliance.conversions.webhooks import WebhookService
from appliance.db.queries import keys as key_rows
from appliance.db.queries import webhooks as webhook_rows
from appliance.errors import InvalidData
from appliance.jobs.webhooks import WebhookSenderThread
from appliance.security.sealing import Columns
from appliance.settings import Settings
from tests.conftest import make_settings
from tests.harness.receiver import Received, Receiver
from tests.integration.jobs.conftest import JobSystem, task


@dataclasses.dataclass
class Redis:
    server: local_services.LocalService
    dir: Path

    def restart(self) -> None:
        """Stopped, then started again on the same port with nothing in it (as a Redis
        without persistence comes back)."""
        self.server.stop()
        self.server = local_services.start_redis(self.dir, self.server.port, persist=False)


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[Redis]:
    """A Redis of the test's own, so that one test can restart it."""
    where = tmp_path / "redis"
    rd = Redis(local_services.start_redis(where, local_services.free_port(), persist=False), where)
    yield rd
    rd.server.stop()


@pytest.fixture
def settings(postgres_url: str, redis: Redis, data_dir: Path) -> Settings:
    """Local storage only (webhooks do not touch storage); retries after 0.2 s, at most 1 s."""
    return make_settings(
        {
            "database_url": postgres_url,
            "redis_url": redis.server.url,
            "data_dir": str(data_dir),
            "reconcile_interval_seconds": "1",
            "retry_backoff_seconds": "0.1",
            "allow_private_urls": "true",
            "webhook_backoff_seconds": "0.2",
            "webhook_backoff_max_seconds": "1",
            "webhook_timeout_seconds": "2",
            "webhook_max_attempts": "100",
        }
    )


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def start_sender(system: JobSystem, settings: Settings | None = None) -> WebhookSenderThread:
    rt = system.rt if settings is None else dataclasses.replace(system.rt, settings=settings)
    sender = WebhookSenderThread(rt)
    sender.start()
    return sender


@pytest.fixture
def sender(system: JobSystem) -> Iterator[WebhookSenderThread]:
    s = start_sender(system)
    yield s
    s.stop()


def hooks(system: JobSystem, settings: Settings | None = None) -> WebhookService:
    columns = Columns(system.rt.storage.keyring)
    return WebhookService(settings or system.settings, system.svc.pool, columns)


def subscribe(system: JobSystem, url: str, events: list[str]) -> dict[str, Any]:
    return json.loads(system.call(hooks(system).create(system.user_id, url, events)))


def create_job(system: JobSystem, tasks: dict[str, Any], webhook_url: str | None = None) -> str:
    doc = system.call(system.svc.create_job(system.user_id, tasks, None, webhook_url=webhook_url))
    return str(json.loads(doc)["id"])


def converting(png_file: Path) -> dict[str, Any]:
    return {
        "b": {
            "operation": "import/base64",
            "filename": "p.png",
            "file": base64.b64encode(png_file.read_bytes()).decode(),
        },
        "c": {"operation": "convert", "input": "b", "output_format": "gif"},
    }


def failing_job(system: JobSystem, webhook_url: str | None = None) -> str:
    """A job that fails at once: its upload is cancelled (no worker needed)."""
    job_id = create_job(system, {"up": {"operation": "import/upload"}}, webhook_url)
    up = task(system.job(job_id), "up")
    system.call(system.svc.cancel_task(system.user_id, uuid.UUID(up["id"])))
    return job_id


def log(system: JobSystem, **filters: Any) -> list[dict[str, Any]]:
    key = (filters.get("webhook_id"), filters.get("job_id"), filters.get("status"))
    doc, _ = system.call(hooks(system).deliveries(system.user_id, key, 1, 100))
    return json.loads(doc)  # type: ignore[no-any-return]


def show(system: JobSystem, webhook_id: str) -> dict[str, Any]:
    return json.loads(system.call(hooks(system).show(system.user_id, uuid.UUID(webhook_id))))


def verified(got: Received, secret: str) -> bool:
    """The official SDK's check, as a receiver runs it."""
    signature = got.headers["cloudconvert-signature"]
    return bool(cloudconvert.Webhook.verify(got.body.decode(), signature, secret))


def test_deliveries_carry_the_job_signed_so_the_official_sdk_verifies_them(
    system, receiver, sender, png_file
):
    hook = subscribe(system, receiver.url, ["job.created", "job.finished"])
    assert len(hook["signing_secret"]) == 64 and hook["events"] == ["job.created", "job.finished"]
    job_id = create_job(system, converting(png_file), webhook_url=receiver.url + "?own")
    assert system.wait(job_id)["status"] == "finished"
    got = receiver.wait_for(3)
    time.sleep(0.5)
    assert len(receiver.received) == 3  # the job's own URL gets no job.created
    own_secret = system.call(hooks(system).signing_secret(system.user_id))
    for r in got:
        secret = own_secret if r.path.endswith("?own") else hook["signing_secret"]
        assert verified(r, secret), r
        assert not verified(r, secret[:-1] + ("0" if secret[-1] != "0" else "1"))
        assert r.headers["content-type"] == "application/json"
    created = receiver.by_event("job.created")
    assert [r.path for r in created] == ["/hook"]
    assert created[0].payload["job"]["id"] == job_id
    assert created[0].payload["job"]["status"] in ("waiting", "processing")
    assert [t["name"] for t in created[0].payload["job"]["tasks"]] == ["b", "c"]
    finished = receiver.by_event("job.finished")
    assert sorted(r.path for r in finished) == ["/hook", "/hook?own"]
    for r in finished:  # the job as GET /v2/jobs/{id} shows it, with its tasks
        assert r.payload == {"event": "job.finished", "job": system.job(job_id)}
    ids = {r.headers["appliance-delivery-id"] for r in got}
    rows = log(system, job_id=job_id)
    assert {row["id"] for row in rows} == ids
    assert {(row["status"], row["attempts"], row["response_code"]) for row in rows} == {
        ("delivered", 1, 200)
    }


def test_a_failed_job_is_announced_as_job_failed(system, receiver, sender):
    subscribe(system, receiver.url, ["job.failed"])
    job_id = failing_job(system, webhook_url=receiver.url + "?own")
    got = receiver.wait_for(2)
    assert {r.event for r in got} == {"job.failed"}
    job = got[0].payload["job"]
    assert job["id"] == job_id and job["status"] == "error"
    assert task(job, "up")["code"] == "CANCELLED"


def test_events_the_webhook_did_not_ask_for_are_not_sent(system, receiver, sender):
    subscribe(system, receiver.url, ["job.finished"])
    failing_job(system)
    time.sleep(1.5)
    assert receiver.received == []
    assert system.sql("SELECT count(*) AS n FROM webhook_deliveries")[0]["n"] == 0


def test_a_receiver_down_for_a_while_gets_every_event_once_it_is_back(
    system, receiver, sender, png_file
):
    receiver.stop()  # its port refuses connections from now on
    hook = subscribe(system, receiver.url, ["job.created", "job.finished"])
    other = start_sender(system)  # a second worker process's senders, sharing the outbox
    try:
        jobs = [create_job(system, converting(png_file)) for _ in range(4)]
        for job_id in jobs:
            assert system.wait(job_id)["status"] == "finished"
        time.sleep(30)  # down for 30 s: every delivery tried and failed many times
        rows = log(system, webhook_id=hook["id"])
        assert len(rows) == 8
        assert all(r["status"] == "pending" and r["attempts"] >= 3 for r in rows), rows
        assert all("Cannot reach" in r["last_error"] for r in rows), rows
        receiver.start()  # back, on the same port
        got = receiver.wait_for(8, timeout=30)
        time.sleep(3)  # anything sent twice would have arrived by now
    finally:
        other.stop()
    assert len(receiver.received) == 8
    assert len({r.headers["appliance-delivery-id"] for r in got}) == 8
    assert sorted((r.payload["job"]["id"], r.event) for r in got) == sorted(
        (j, e) for j in jobs for e in ("job.created", "job.finished")
    )
    rows = log(system, webhook_id=hook["id"])
    assert {r["status"] for r in rows} == {"delivered"}


def test_an_event_outlives_a_redis_restart_between_the_jobs_end_and_its_delivery(
    system, receiver, redis, png_file
):
    subscribe(system, receiver.url, ["job.finished"])
    job_id = create_job(system, converting(png_file))
    assert system.wait(job_id)["status"] == "finished"
    system.stop_worker()
    redis.restart()  # whatever Redis held is gone
    assert system.sql("SELECT status FROM webhook_deliveries") == [{"status": "pending"}]
    sender = start_sender(system)  # a worker process starting after the restart
    try:
        got = receiver.wait_for(1)
    finally:
        sender.stop()
    assert got[0].event == "job.finished" and got[0].payload["job"]["id"] == job_id


def test_a_410_answer_disables_the_webhook(system, receiver, sender):
    receiver.status = 410
    hook = subscribe(system, receiver.url, ["job.failed"])
    failing_job(system)
    receiver.wait_for(1)
    deadline = time.monotonic() + 10
    while not (shown := show(system, hook["id"]))["disabled"]:
        assert time.monotonic() < deadline, shown
        time.sleep(0.1)
    [delivery] = shown["deliveries"]
    assert (delivery["status"], delivery["response_code"], delivery["attempts"]) == (
        "failed",
        410,
        1,
    )
    assert "410" in delivery["last_error"]
    failing_job(system)
    time.sleep(1.5)
    assert len(receiver.received) == 1  # nothing more for a disabled webhook
    assert len(log(system, webhook_id=hook["id"])) == 1


def test_server_errors_are_retried_and_other_answers_fail_at_once(system, receiver, sender):
    receiver.status = 503
    subscribe(system, receiver.url, ["job.failed"])
    job_id = failing_job(system)
    receiver.wait_for(3)  # tried again and again
    receiver.status = 200
    deadline = time.monotonic() + 10
    while log(system, job_id=job_id)[0]["status"] != "delivered":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    [row] = log(system, job_id=job_id)
    assert row["attempts"] >= 4 and row["response_code"] == 200
    receiver.status = 404
    count = len(receiver.received)  # before: the delivery may arrive before the job returns
    second = failing_job(system)
    time.sleep(1.5)
    assert len(receiver.received) == count + 1
    [row] = log(system, job_id=second)
    assert (row["status"], row["response_code"], row["attempts"]) == ("failed", 404, 1)


def test_a_delivery_out_of_attempts_fails(system, receiver):
    receiver.stop()
    strict = msgspec.structs.replace(system.settings, webhook_max_attempts=2)
    sender = start_sender(system, strict)
    try:
        subscribe(system, receiver.url, ["job.failed"])
        job_id = failing_job(system)
        deadline = time.monotonic() + 10
        while log(system, job_id=job_id)[0]["status"] == "pending":
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        sender.stop()
    [row] = log(system, job_id=job_id)
    assert (row["status"], row["attempts"]) == ("failed", 2)
    assert "out of attempts" in row["last_error"]


def test_private_addresses_are_refused_unless_allowed(system, receiver):
    strict = msgspec.structs.replace(system.settings, allow_private_urls=False)
    for url in (receiver.url, f"http://localhost:{receiver.port}/hook", "http://10.0.0.1/x"):
        with pytest.raises(InvalidData) as refused:
            system.call(hooks(system, strict).create(system.user_id, url, ["job.failed"]))
        assert refused.value.code == "URL_NOT_ALLOWED"
    # A job's own URL is checked when it is delivered to (and a webhook's again, each time).
    sender = start_sender(system, strict)
    try:
        job_id = failing_job(system, webhook_url=receiver.url)
        deadline = time.monotonic() + 10
        while log(system, job_id=job_id)[0]["status"] == "pending":
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        sender.stop()
    [row] = log(system, job_id=job_id)
    assert (row["status"], row["attempts"], row["response_code"]) == ("failed", 1, None)
    assert "non-public" in row["last_error"]
    assert receiver.received == []


def test_a_webhook_url_that_is_not_http_is_refused_when_the_job_is_made(system):
    for url in ("ftp://example.com/x", "http://", "not a url"):
        with pytest.raises(InvalidData) as refused:
            create_job(system, {"up": {"operation": "import/upload"}}, webhook_url=url)
        assert refused.value.errors == {
            "webhook_url": ["must be an http:// or https:// URL of at most 2048 characters"]
        }


def test_senders_asking_at_once_for_a_new_users_secret_all_get_the_one_kept(system):
    """Senders (and the API) racing to make a user's signing secret: each gets the one stored,
    never the NULL the loser's statement snapshot still showed."""
    racers = 6
    for _ in range(10):
        with system.rt.pool.connection() as conn:
            user = key_rows.ensure_user(conn, f"race-{uuid.uuid4().hex[:8]}@example.test")
        start = threading.Barrier(racers)

        def ask(i: int, user: uuid.UUID = user, start: threading.Barrier = start) -> str | None:
            start.wait()
            return webhook_rows.signing_secret_sync(system.rt.pool, user, f"candidate-{i}")

        with ThreadPoolExecutor(racers) as pool:
            kept = set(pool.map(ask, range(racers)))
        assert len(kept) == 1 and None not in kept, kept
