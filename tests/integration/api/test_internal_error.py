"""A bug in a handler is a 500 in CloudConvert's shape with the stable INTERNAL_ERROR code,
and the exception's text stays in the log."""

from __future__ import annotations

import logging
import uuid

from appliance.conversions.service import JobService


def test_an_unexpected_exception_is_a_500_internal_error_that_hides_its_text(
    api, monkeypatch, caplog
):
    async def broken(self, user_id, job_id):
        raise RuntimeError("connection string with a password")

    monkeypatch.setattr(JobService, "get_job", broken)
    with caplog.at_level(logging.ERROR, logger="appliance.api"):
        r = api.get(f"/v2/jobs/{uuid.uuid4()}")
    assert r.status_code == 500
    assert r.json() == {"code": "INTERNAL_ERROR", "message": "Internal server error"}
    assert "password" not in r.text
    assert any("password" in str(rec.exc_info[1]) for rec in caplog.records if rec.exc_info)
