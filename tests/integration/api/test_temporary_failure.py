"""A part behind the API failing for a moment (the S3 store unreachable) is answered 503 with
Retry-After: the request kept nothing and may be sent again, unlike a 500."""

from __future__ import annotations

import uuid

from appliance.conversions.service import JobService
from appliance.errors import RetryableError


def test_a_retryable_failure_is_a_503_with_retry_after(api, monkeypatch):
    async def unreachable(self, user_id, job_id):
        raise RetryableError("storage unreachable", code="STORAGE_ERROR")

    monkeypatch.setattr(JobService, "get_job", unreachable)
    r = api.get(f"/v2/jobs/{uuid.uuid4()}")
    assert r.status_code == 503
    assert r.headers["Retry-After"] == "5"
    assert r.json()["code"] == "STORAGE_ERROR"
