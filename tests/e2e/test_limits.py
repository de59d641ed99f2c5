"""The app's rate limits over HTTP, with two API processes sharing one Redis: requests per
client address and per key, conversions per client address, each refused past its limit with
429, Retry-After and the IETF RateLimit fields, and counted alike by both processes."""

from __future__ import annotations

import itertools
import time

import pytest

from tests.e2e.conftest import base64_import

PER_ADDRESS, PER_KEY, CONVERSIONS = 40, 60, 5
DEPLOYMENT_ENV = {
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
