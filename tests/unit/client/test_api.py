"""The client's job creation: one Idempotency-Key per job, the same on every try, and tries
again only when the answer did not come or said to come back."""

from __future__ import annotations

import httpx
import pytest

from appliance.client import api as client_api
from appliance.client.api import ApiClient, ApiError

JOB = {"data": {"id": "j1", "status": "waiting", "tasks": []}}


def _client(answers: list, seen: list[httpx.Request]) -> ApiClient:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return ApiClient("http://appliance.test", "key", transport=httpx.MockTransport(handle))


@pytest.fixture(autouse=True)
def no_pauses(monkeypatch):
    monkeypatch.setattr(client_api, "RESEND_PAUSES", (0.0, 0.0, 0.0))


def test_a_job_is_created_with_one_key_sent_again_after_no_answer_and_a_409():
    seen: list[httpx.Request] = []
    answers = [
        httpx.ConnectError("reset"),
        httpx.Response(409, json={"code": "IDEMPOTENCY_KEY_IN_USE", "message": "later"}),
        httpx.Response(201, json=JOB),
    ]
    with _client(answers, seen) as api:
        assert api.create_job({"in": {"operation": "import/upload"}})["id"] == "j1"
    keys = {r.headers["Idempotency-Key"] for r in seen}
    assert len(seen) == 3 and len(keys) == 1 and len(keys.pop()) == 36


def test_each_job_gets_its_own_key():
    seen: list[httpx.Request] = []
    with _client([httpx.Response(201, json=JOB)] * 2, seen) as api:
        api.create_job({})
        api.create_job({})
    assert seen[0].headers["Idempotency-Key"] != seen[1].headers["Idempotency-Key"]


def test_a_refusal_is_not_sent_again():
    seen: list[httpx.Request] = []
    answers = [httpx.Response(422, json={"code": "IDEMPOTENCY_KEY_REUSED", "message": "no"})]
    with _client(answers, seen) as api, pytest.raises(ApiError) as refused:
        api.create_job({})
    assert refused.value.code == "IDEMPOTENCY_KEY_REUSED" and len(seen) == 1


def test_the_tries_are_bounded():
    seen: list[httpx.Request] = []
    with _client([httpx.Response(503, json={})] * 4, seen) as api, pytest.raises(ApiError):
        api.create_job({})
    assert len(seen) == 4
