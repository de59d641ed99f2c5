"""Usage and quotas over HTTP and the CLI, against a running deployment: ``credits`` in
users/me shrink after a conversion, a user past their daily minutes gets CloudConvert's 402
while another user does not, and ``appliance usage`` exports the day in CSV and JSON."""

from __future__ import annotations

import csv
import io
import json
import uuid

import pyvips

from tests.e2e.conftest import base64_import, run_job, task


def _conversion() -> tuple[bytes, dict]:
    """A PNG no other test converts (no conversion-cache hit), to WebP, exported."""
    noise = pyvips.Image.gaussnoise(1200, 1200, mean=128, sigma=40).cast("uchar")
    data = bytes(noise.write_to_buffer(".png"))
    tasks = {
        "in": base64_import("noise.png", data),
        "c": {"operation": "convert", "input": "in", "output_format": "webp"},
        "e": {"operation": "export/url", "input": "c"},
    }
    return data, tasks


def _credits(api) -> int | None:
    me = api.get("/v2/users/me")
    assert me.status_code == 200, me.text
    return me.json()["data"]["credits"]  # type: ignore[no-any-return]


def test_credits_shrink_after_a_conversion_and_a_user_past_them_gets_402(deployment):
    email, other = (f"{n}{uuid.uuid4().hex[:6]}@example.test" for n in ("quota", "other"))
    key, other_key = deployment.key(email), deployment.key(other)
    unlimited = deployment.key()
    for who in (email, other):
        deployment.cli("users", "quota", who, "--minutes-per-day", "1")
    with deployment.client(key) as api:
        assert _credits(api) == 1
        _, tasks = _conversion()
        assert run_job(api, tasks)["status"] == "finished"
        assert _credits(api) == 0  # a minute begun is a minute used
        refused = api.post("/v2/jobs", json={"tasks": {"up": {"operation": "import/upload"}}})
        assert refused.status_code == 402, refused.text
        assert refused.json()["code"] == "CREDITS_EXCEEDED"
    with deployment.client(other_key) as api:
        assert _credits(api) == 1
        made = api.post("/v2/jobs", json={"tasks": {"up": {"operation": "import/upload"}}})
        assert made.status_code == 201, made.text
    with deployment.client(unlimited) as api:
        assert _credits(api) is None


def test_the_usage_export_in_csv_and_json_holds_the_days_conversion(deployment):
    email = f"billing{uuid.uuid4().hex[:6]}@example.test"
    with deployment.client(deployment.key(email)) as api:
        data, tasks = _conversion()
        job = run_job(api, tasks)
        assert job["status"] == "finished"
    out_size = task(job, "c")["result"]["files"][0]["size"]
    [row] = json.loads(deployment.cli("usage", "--user", email, "--format", "json"))
    assert row["email"] == email and row["jobs_created"] == 1 and row["tasks_ended"] == 3
    assert row["cpu_seconds"] > 0
    assert (row["bytes_in"], row["bytes_out"], row["bytes_exported"]) == (
        len(data),
        out_size,
        out_size,
    )
    table = list(csv.DictReader(io.StringIO(deployment.cli("usage", "--user", email))))
    assert [r["day"] for r in table] == [row["day"]]
    assert float(table[0]["cpu_seconds"]) == row["cpu_seconds"]
    assert int(table[0]["bytes_in"]) == len(data)
    every = json.loads(deployment.cli("usage", "--format", "json"))  # without --user: all
    assert email in {r["email"] for r in every} and len(every) >= 2
