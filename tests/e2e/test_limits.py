"""The app's limits over HTTP, with two API processes sharing one Redis: requests per client
address and per key, conversions per client address, each refused past its limit with 429,
Retry-After and the IETF RateLimit fields, and counted alike by both processes; a user's sync
requests open at once; the caps on JSON bodies and on upload forms."""

from __future__ import annotations

import itertools
import threading
import time

import httpx
import pytest
import redis

from appliance.security.keys import key_hash
from tests.e2e.conftest import base64_import, task, upload

PER_ADDRESS, PER_KEY, CONVERSIONS = 40, 60, 5
SYNC_WAITS = 2
DEPLOYMENT_ENV = {
    "APPLIANCE_MAX_SYNC_WAITS_PER_USER": str(SYNC_WAITS),
    "APPLIANCE_API_WORKERS": "2",  # two processes answer, one count
    "APPLIANCE_REQUESTS_PER_MINUTE_PER_ADDRESS": str(PER_ADDRESS),
    "APPLIANCE_REQUESTS_PER_MINUTE_PER_KEY": str(PER_KEY),
    "APPLIANCE_CONVERSIONS_PER_MINUTE_PER_ADDRESS": str(CONVERSIONS),
}


def _fresh_window() -> None:
    """Start well inside a minute: the limits count in fixed one-minute windows."""
    into = time.time() % 60
    if into > 40:
        time.sleep(60.5 - into)


_ADDRESSES = itertools.count(1)


def _address() -> dict[str, str]:
    """A client address no other request of this run has used (198.18.0.0/15, 131,070 of
    them), so one test's spent window never refuses another test's request."""
    n = next(_ADDRESSES)
    return {"X-Forwarded-For": f"198.{18 + n // 65536}.{n // 256 % 256}.{n % 256}"}


def _statuses(answers) -> dict[int, int]:
    counts: dict[int, int] = {}
    for r in answers:
        counts[r.status_code] = counts.get(r.status_code, 0) + 1
    return counts


def test_requests_past_the_per_address_limit_are_429_counted_across_processes(deployment):
    _fresh_window()
    address = _address()
    with deployment.client(deployment.key()) as api:
        answers = [api.get("/v2/jobs", headers=address) for _ in range(PER_ADDRESS + 20)]
    assert _statuses(answers) == {200: PER_ADDRESS, 429: 20}
    refused = answers[-1]
    assert refused.json()["code"] == "TOO_MANY_REQUESTS"
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["RateLimit-Policy"] == f'"requests-per-address";q={PER_ADDRESS};w=60'


def test_a_key_is_limited_across_addresses(deployment):
    _fresh_window()
    with deployment.client(deployment.key()) as api:
        answers = [api.get("/v2/jobs", headers=_address()) for _ in range(PER_KEY + 10)]
    assert _statuses(answers) == {200: PER_KEY, 429: 10}
    assert answers[-1].headers["RateLimit-Policy"] == f'"requests-per-key";q={PER_KEY};w=60'


@pytest.mark.parametrize("how", ["job", "single task"])
def test_conversions_past_the_per_address_limit_are_refused_whole(deployment, how):
    _fresh_window()
    address = _address()
    png = base64_import("a.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    with deployment.client(deployment.key()) as api:
        if how == "job":  # two conversions a job
            tasks = {
                "in": png,
                "a": {"operation": "convert", "input": "in", "output_format": "webp"},
                "b": {"operation": "convert", "input": "in", "output_format": "jpg"},
            }
            answers = [
                api.post("/v2/jobs", json={"tasks": tasks}, headers=address) for _ in range(4)
            ]
            assert [r.status_code for r in answers] == [201, 201, 429, 429]  # 2, 4, (6), (8)
        else:
            made = api.post("/v2/import/base64", json=png, headers=address)
            assert made.status_code == 201  # an import is no conversion
            task = {"input": made.json()["data"]["id"], "output_format": "webp"}
            answers = [api.post("/v2/convert", json=task, headers=address) for _ in range(7)]
            assert [r.status_code for r in answers] == [201] * CONVERSIONS + [429, 429]
    refused = answers[-1]
    assert refused.headers["RateLimit-Policy"] == f'"conversions-per-address";q={CONVERSIONS};w=60'


def test_a_json_body_past_its_cap_is_413_but_import_base64_files_have_their_own(deployment):
    big = "x" * (1024 * 1024 + 1)  # the default cap is 1 MiB
    with deployment.client(deployment.key()) as api:
        tagged = api.post(
            "/v2/jobs",
            json={"tasks": {"up": {"operation": "import/upload"}}, "tag": big},
            headers=_address(),
        )
        assert tagged.status_code == 413 and tagged.json()["code"] == "BODY_TOO_LARGE"
        option = api.post(
            "/v2/import/upload", json={"note": big}, headers=_address()
        )  # a route with no room for files: refused while reading
        assert option.status_code == 413 and option.json()["code"] == "BODY_TOO_LARGE"
        inline = base64_import("a.bin", b"\0" * (1536 * 1024))  # 2 MiB of base64
        for made in (
            api.post("/v2/jobs", json={"tasks": {"in": inline}}, headers=_address()),
            api.post("/v2/import/base64", json=inline, headers=_address()),
        ):
            assert made.status_code == 201, made.text


def test_an_upload_form_with_too_many_parts_or_header_bytes_is_refused(deployment, tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes(b"hello")
    with deployment.client(deployment.key()) as api:
        made = api.post("/v2/import/upload", json={}, headers=_address())
    form = made.json()["data"]["result"]["form"]
    padded = {**form, "parameters": {**form["parameters"], **{f"f{i}": "x" for i in range(40)}}}
    refused = upload(padded, path)
    assert refused.status_code == 400 and refused.json()["code"] == "INVALID_UPLOAD"
    long_name = "n" * (9 * 1024)
    flooded = {**form, "parameters": {**form["parameters"], long_name: "x"}}
    refused = upload(flooded, path)
    assert refused.status_code == 400 and refused.json()["code"] == "INVALID_UPLOAD"
    assert upload(form, path).status_code == 201  # the form as given still works


def test_a_user_holds_a_bounded_number_of_sync_requests_open(deployment, tmp_path):
    key = deployment.key()
    with deployment.client(key) as api:
        job = api.post(
            "/v2/jobs", json={"tasks": {"up": {"operation": "import/upload"}}}, headers=_address()
        ).json()["data"]
    answers: list[httpx.Response] = []

    def wait() -> None:
        with deployment.client(key) as api:
            answers.append(api.get(f"/v2/jobs/{job['id']}/wait", headers=_address()))

    waits = [threading.Thread(target=wait) for _ in range(SYNC_WAITS)]
    for t in waits:
        t.start()
    [user] = deployment.sql("SELECT user_id FROM api_keys WHERE key_hash = %s", key_hash(key))
    slots = redis.Redis.from_url(deployment.env["APPLIANCE_REDIS_URL"])
    held = f"appliance:ratelimit:sync-waits-per-user:{user['user_id']}"
    for _ in range(100):  # both waits open
        if int(slots.get(held) or 0) == SYNC_WAITS:
            break
        time.sleep(0.1)
    with deployment.client(key) as api:
        refused = api.get(f"/v2/jobs/{job['id']}/wait", headers=_address())
        assert refused.status_code == 429, refused.text
        assert refused.json()["code"] == "TOO_MANY_AT_ONCE"
        assert int(refused.headers["Retry-After"]) > 0
        with deployment.client(deployment.key()) as other:  # another user's slots are theirs
            done = other.post(
                "/v2/jobs", json={"tasks": {"in": base64_import("a.txt", b"hi")}}
            ).json()["data"]
            assert other.get(f"/v2/jobs/{done['id']}/wait").status_code == 200
        path = tmp_path / "a.txt"
        path.write_bytes(b"hello")
        assert upload(task(job, "up")["result"]["form"], path).status_code == 201
        for t in waits:
            t.join(timeout=20)
        assert [a.json()["data"]["status"] for a in answers] == ["finished"] * SYNC_WAITS
        again = api.get(f"/v2/jobs/{job['id']}/wait", headers=_address())
        assert again.status_code == 200  # the slots came back
