"""A signed URL's cache_key on the real database: the job it ran counts while it has not failed,
its exported URLs stay valid and it is not expiring; the record goes with the job or the base."""

from __future__ import annotations

import base64
import json
import uuid

from appliance.conversions.signed_urls import SignedUrlService
from appliance.security.sealing import Columns


def _setup(system) -> tuple[SignedUrlService, uuid.UUID, uuid.UUID]:
    svc = SignedUrlService(system.settings, system.svc.pool, Columns(system.rt.storage.keyring))
    base_id = uuid.UUID(json.loads(system.call(svc.create(system.user_id, None)))["id"])
    job = system.create(
        {
            "in": {
                "operation": "import/base64",
                "file": base64.b64encode(b"hello").decode(),
                "filename": "a.txt",
            },
            "e": {"operation": "export/url", "input": "in"},
        }
    )
    system.wait(job["id"])
    job_id = uuid.UUID(job["id"])
    system.call(svc.remember(base_id, "k", job_id))
    return svc, base_id, job_id


def test_a_cached_job_counts_until_it_fails_or_its_urls_near_their_end(system):
    svc, base_id, job_id = _setup(system)
    assert system.call(svc.cached(base_id, "k")) == job_id
    assert system.call(svc.cached(base_id, "other")) is None
    ttl = system.settings.url_ttl_seconds
    system.sql(
        "UPDATE jobs SET created_at = now() - make_interval(secs => %s) WHERE id = %s",
        ttl - 30,
        job_id,
    )
    assert system.call(svc.cached(base_id, "k")) is None  # its URL has under a minute left
    system.sql("UPDATE jobs SET created_at = now(), expires_at = now() + interval '30 s'")
    assert system.call(svc.cached(base_id, "k")) is None  # the job is about to be deleted
    system.sql("UPDATE jobs SET expires_at = now() + interval '1 hour', status = 'error'")
    assert system.call(svc.cached(base_id, "k")) is None  # failed: run again
    system.sql("UPDATE jobs SET status = 'finished'")
    assert system.call(svc.cached(base_id, "k")) == job_id


def test_the_record_goes_with_the_job_or_the_base(system):
    svc, _, job_id = _setup(system)
    system.sql("DELETE FROM jobs WHERE id = %s", job_id)
    assert system.sql("SELECT * FROM signed_url_results") == []
    _, other_base, _ = _setup(system)
    system.call(svc.delete(system.user_id, other_base))
    assert system.sql("SELECT * FROM signed_url_results") == []
