"""The appliance's clients, as Locust users (run by ``python -m bench.loadtest``).

- ``Converter`` (3 in 4 users): a job of one small file (an image, a CSV table or a Markdown
  text) sent inline, converted and exported; it waits for the job by polling
  ``GET /v2/jobs/{id}`` every 2 s or, one time in three, on the sync API; then downloads the
  output. A job that ends in error counts as a failed request.
- ``Watcher`` (1 in 4): status polls of its own job (a new one once it has expired), job lists
  and the format list.

Environment: ``LOADTEST_KEYS`` (a file of API keys, one per line, handed out in turn),
``LOADTEST_METRICS_URL`` (the API's /metrics, sampled for queue depth into
``LOADTEST_QUEUE_CSV`` every ``SAMPLE_SECONDS``), ``LOADTEST_MIX`` (the kinds of file jobs
bring, of ``ALL_SAMPLES``: image,table,text by default; a fleet without the markup engines
leaves text out), ``LOADTEST_UNIQUE=1`` (every job's file unlike
any other, as real clients' files are: no stored file or cached conversion is shared by two
jobs), ``LOADTEST_INSECURE=1`` (the appliance's TLS certificate is not checked: a test fleet's
self-signed one).
"""

from __future__ import annotations

import base64
import csv
import io
import itertools
import os
import random
import re
import time
import uuid
from pathlib import Path
from typing import Any

import gevent
import requests
import urllib3
from locust import HttpUser, between, events, task
from PIL import Image

KEYS = Path(os.environ.get("LOADTEST_KEYS", "/dev/null")).read_text().split()
UNIQUE = os.environ.get("LOADTEST_UNIQUE") == "1"
INSECURE = os.environ.get("LOADTEST_INSECURE") == "1"
if INSECURE:  # said once by the flag, not once per request
    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
_turn = itertools.count()
POLL_SECONDS = 2.0
JOB_SECONDS = 120.0  # longest a simulated client waits for its job
SAMPLE_SECONDS = 5.0


def _png() -> bytes:
    out = io.BytesIO()
    Image.linear_gradient("L").resize((64, 48)).convert("RGB").save(out, "PNG")
    return out.getvalue()


ALL_SAMPLES = {  # kind: (file name, bytes, target format)
    "image": ("photo.png", _png(), "webp"),
    "table": ("table.csv", b"city,people\nOslo,709000\nLima,10000000\nPerth,2100000\n", "json"),
    "text": (
        "notes.md",
        b"# Notes\n\nA *short* text with a [link](https://example.org).\n",
        "html",
    ),
}
SAMPLES = [ALL_SAMPLES[k] for k in os.environ.get("LOADTEST_MIX", ",".join(ALL_SAMPLES)).split(",")]


def unique(name: str, data: bytes, target: str) -> tuple[str, bytes, str]:
    """The sample with a mark of its own: a row, a line, or the first pixel's colour."""
    mark = uuid.uuid4()
    if name.endswith(".csv"):
        return name, data + f"{mark.hex},0\n".encode(), target
    if name.endswith(".md"):
        return name, data + f"\n{mark.hex}\n".encode(), target
    image = Image.open(io.BytesIO(data))
    image.putpixel((0, 0), tuple(mark.bytes[:3]))
    out = io.BytesIO()
    image.save(out, "PNG")
    return name, out.getvalue(), target


def sample() -> tuple[str, bytes, str]:
    chosen = random.choice(SAMPLES)
    return unique(*chosen) if UNIQUE else chosen


def job_body(name: str, data: bytes, target: str) -> dict[str, Any]:
    return {
        "tasks": {
            "in": {
                "operation": "import/base64",
                "file": base64.b64encode(data).decode(),
                "filename": name,
            },
            "c": {"operation": "convert", "input": "in", "output_format": target},
            "e": {"operation": "export/url", "input": "c"},
        },
        "tag": "loadtest",
    }


def idempotency_key() -> dict[str, str]:
    """A new key for each job, as a careful client sends: the lb may then resend the POST to
    another api host when one fails with it in flight, and the job is still made once."""
    return {"Idempotency-Key": str(uuid.uuid4())}


class Client(HttpUser):
    abstract = True

    def on_start(self) -> None:
        if not KEYS:
            raise RuntimeError("LOADTEST_KEYS names no keys")
        self.client.headers["Authorization"] = f"Bearer {KEYS[next(_turn) % len(KEYS)]}"
        if INSECURE:
            self.client.verify = False


class Converter(Client):
    weight = 3
    wait_time = between(1, 3)

    @task
    def convert(self) -> None:
        started = time.monotonic()
        made = self.client.post("/v2/jobs", json=job_body(*sample()), headers=idempotency_key())
        if made.status_code != 201:
            return
        job_id = made.json()["data"]["id"]
        if random.random() < 1 / 3:
            waited = self.client.get(f"/sync/v2/jobs/{job_id}", name="/sync/v2/jobs/[id]")
            job = waited.json()["data"] if waited.status_code == 200 else None
        else:
            job = self._poll(job_id)
        ended = (
            None
            if job and job["status"] == "finished"
            else f"job {job_id}: {job and job['status']}"
        )
        # The job from creation to its end, as a request of its own in the report.
        self.environment.events.request.fire(
            request_type="JOB",
            name="created to ended",
            response_time=(time.monotonic() - started) * 1000,
            response_length=0,
            exception=RuntimeError(ended) if ended else None,
            context={},
        )
        if job is None or ended:
            return
        for export in (t for t in job["tasks"] if t["operation"] == "export/url"):
            for file in export["result"]["files"]:
                self.client.get(file["url"], name="download")

    def _poll(self, job_id: str) -> dict[str, Any] | None:
        deadline = time.monotonic() + JOB_SECONDS
        while time.monotonic() < deadline:
            shown = self.client.get(f"/v2/jobs/{job_id}", name="/v2/jobs/[id]")
            if shown.status_code == 200 and shown.json()["data"]["status"] in ("finished", "error"):
                return shown.json()["data"]  # type: ignore[no-any-return]
            gevent.sleep(POLL_SECONDS)
        return None


class Watcher(Client):
    weight = 1
    wait_time = between(1, 2)
    job_id: str | None = None

    def on_start(self) -> None:
        super().on_start()
        self._new_job()

    def _new_job(self) -> None:
        made = self.client.post("/v2/jobs", json=job_body(*sample()), headers=idempotency_key())
        self.job_id = made.json()["data"]["id"] if made.status_code == 201 else None

    @task(4)
    def status(self) -> None:
        if not self.job_id:
            return
        with self.client.get(
            f"/v2/jobs/{self.job_id}", name="/v2/jobs/[id]", catch_response=True
        ) as shown:
            if shown.status_code == 404:  # its job has expired (retention): watch a new one
                shown.success()
                self._new_job()

    @task(2)
    def jobs(self) -> None:
        self.client.get("/v2/jobs?per_page=10", name="/v2/jobs")

    @task(1)
    def formats(self) -> None:
        self.client.get("/v2/convert/formats", name="/v2/convert/formats")


QUEUE_LINE = re.compile(r'^appliance_queue_(depth|oldest_age_seconds)\{queue="([^"]+)"\} (\S+)$')


def _sample_queues(url: str, out: Path) -> None:
    """Queue depth and oldest age from the API's /metrics, every SAMPLE_SECONDS."""
    with out.open("w", newline="") as f:
        rows = csv.writer(f)
        rows.writerow(["time", "queue", "depth", "oldest_age_seconds"])
        while True:
            try:
                text = requests.get(url, timeout=5).text
            except requests.RequestException:
                text = ""
            seen: dict[str, dict[str, str]] = {}
            for line in text.splitlines():
                found = QUEUE_LINE.match(line)
                if found:
                    seen.setdefault(found[2], {})[found[1]] = found[3]
            for queue, values in sorted(seen.items()):
                depth, age = values.get("depth", ""), values.get("oldest_age_seconds", "")
                rows.writerow([f"{time.time():.0f}", queue, depth, age])
            f.flush()
            gevent.sleep(SAMPLE_SECONDS)


@events.test_start.add_listener
def _start_sampler(environment: Any, **_: Any) -> None:
    url, out = os.environ.get("LOADTEST_METRICS_URL"), os.environ.get("LOADTEST_QUEUE_CSV")
    if url and out:
        gevent.spawn(_sample_queues, url, Path(out))
