"""Signed URLs over HTTP, built with the official SDK's ``SignedUrl.sign`` as it is: a base is
made through /v2/signed-urls; opening a URL on it runs the job as the base's owner (no API key)
and redirects to the output; a cache_key answers with the first job; tampered, unsigned and
expired URLs are refused; another user cannot see or delete a base; the client address's
conversion limit counts signed URLs too."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import time
from collections.abc import Iterator

import httpx
import pytest
import pyvips
from cloudconvert.signed_url import SignedUrl

from appliance.security.keys import key_hash
from tests.e2e.conftest import base64_import
from tests.harness.origin import always, serve

CONVERSIONS = 3
DEPLOYMENT_ENV = {"APPLIANCE_CONVERSIONS_PER_MINUTE_PER_ADDRESS": str(CONVERSIONS)}
_ADDRESSES = itertools.count(1)


def _address() -> dict[str, str]:
    """A client address of its own for each test (203.0.113.0/24 and on): the conversion
    limit counts per address, and no other module uses these."""
    n = next(_ADDRESSES)
    return {"X-Forwarded-For": f"203.0.{113 + n // 256}.{n % 256}"}


@pytest.fixture(scope="module")
def png_server(png_file) -> Iterator[str]:
    """An HTTP server on loopback serving the PNG at /photo.png."""
    with serve(always(png_file.read_bytes(), Content_Type="image/png")) as origin:
        yield origin.url("/photo.png")


@pytest.fixture
def job(deployment, png_server, png_file) -> dict:
    """import (from the URL where the deployment may fetch private URLs, else inline), a
    convert to a 120 px wide WebP, export/url."""
    if deployment.env.get("APPLIANCE_ALLOW_PRIVATE_URLS") == "true":
        source = {"operation": "import/url", "url": png_server}
    else:
        source = base64_import("photo.png", png_file.read_bytes())
    return {
        "tasks": {
            "import-it": source,
            "convert-it": {
                "operation": "convert",
                "input": "import-it",
                "output_format": "webp",
                "width": 120,
            },
            "export-it": {"operation": "export/url", "input": "convert-it"},
        }
    }


def make_base(api: httpx.Client) -> dict:
    made = api.post("/v2/signed-urls", json={"name": "download as webp"})
    assert made.status_code == 201, made.text
    return made.json()["data"]


def jobs_of(deployment, base: dict) -> int:
    rows = deployment.sql(
        "SELECT count(*) AS n FROM jobs WHERE user_id ="
        " (SELECT user_id FROM signed_url_bases WHERE id = %s)",
        base["id"],
    )
    return rows[0]["n"]


def webp_width(location: str) -> int:
    output = httpx.get(location, timeout=60)
    assert output.status_code == 200 and output.content[8:12] == b"WEBP"
    return pyvips.Image.new_from_buffer(output.content, "").width


def test_a_signed_url_runs_its_job_as_the_owner_and_redirects_to_the_output(deployment, job):
    with deployment.client(deployment.key()) as api:
        base = make_base(api)
        assert base["url"] == f"{deployment.url}/v2/s/{base['id']}"
        assert len(base["signing_secret"]) >= 32 and base["name"] == "download as webp"
        url = SignedUrl.sign(base["url"], base["signing_secret"], job)
        opened = httpx.get(url, headers=_address(), timeout=60)  # no API key
        assert opened.status_code == 302, opened.text
        assert webp_width(opened.headers["Location"]) == 120
        owned = api.get("/v2/jobs").json()["data"]
        assert len(owned) == 1 and owned[0]["status"] == "finished"


def test_a_cache_key_answers_with_the_first_job_and_creates_no_other(deployment, job):
    address = _address()
    with deployment.client(deployment.key()) as api:
        base = make_base(api)
    url = SignedUrl.sign(base["url"], base["signing_secret"], job, "photo-1")
    first = httpx.get(url, headers=address, timeout=60)
    assert first.status_code == 302, first.text
    assert jobs_of(deployment, base) == 1
    again = httpx.get(url, headers=address, timeout=60)
    assert again.status_code == 302 and jobs_of(deployment, base) == 1
    assert webp_width(again.headers["Location"]) == 120
    other = SignedUrl.sign(base["url"], base["signing_secret"], job, "photo-2")
    assert httpx.get(other, headers=address, timeout=60).status_code == 302
    assert jobs_of(deployment, base) == 2


def _with_signature(url: str, sig: str) -> str:
    return url.rsplit("&s=", 1)[0] + "&s=" + sig


def test_tampered_and_unsigned_urls_are_refused_and_run_nothing(deployment, job):
    with deployment.client(deployment.key()) as api:
        base, other_base = make_base(api), make_base(api)
    url = SignedUrl.sign(base["url"], base["signing_secret"], job)
    sig = url.rsplit("&s=", 1)[1]
    bigger = {**job, "tasks": {**job["tasks"]}}
    bigger["tasks"]["convert-it"] = {**job["tasks"]["convert-it"], "width": 4000}
    tampered = {
        "job": _with_signature(SignedUrl.sign(base["url"], "guess", bigger), sig),
        "signature": _with_signature(url, ("0" if sig[0] != "0" else "1") + sig[1:]),
        "base": url.replace(base["id"], other_base["id"]),
        "unsigned": url.rsplit("&s=", 1)[0],
        "added after": url + "&cache_key=mine",
    }
    for what, bad in tampered.items():
        refused = httpx.get(bad, headers=_address(), timeout=60)
        assert refused.status_code == 403, (what, refused.text)
        assert refused.json()["code"] == "INVALID_SIGNATURE", what
    unknown = url.replace(base["id"], "00000000-0000-4000-8000-000000000000")
    assert httpx.get(unknown, timeout=60).status_code == 404
    assert jobs_of(deployment, base) == 0


def test_an_expired_url_is_refused_and_one_not_yet_expired_runs(deployment, job):
    with deployment.client(deployment.key()) as api:
        base = make_base(api)
    secret = base["signing_secret"]
    past = SignedUrl.sign(base["url"], secret, {**job, "expires": int(time.time()) - 1})
    refused = httpx.get(past, headers=_address(), timeout=60)
    assert refused.status_code == 403 and refused.json()["code"] == "SIGNED_URL_EXPIRED"
    future = SignedUrl.sign(base["url"], secret, {**job, "expires": int(time.time()) + 600})
    assert httpx.get(future, headers=_address(), timeout=60).status_code == 302
    # The expires parameter, signed with the rest of the URL, counts the same.
    signed = SignedUrl.sign(base["url"], secret, job).rsplit("&s=", 1)[0]
    signed += f"&expires={int(time.time()) - 1}"
    sig = hmac.new(secret.encode(), signed.encode(), hashlib.sha256).hexdigest()
    assert httpx.get(f"{signed}&s={sig}", headers=_address(), timeout=60).status_code == 403
    assert jobs_of(deployment, base) == 1


def test_another_users_base_cannot_be_read_used_or_deleted(deployment, job):
    with deployment.client(deployment.key()) as mine, deployment.client(deployment.key()) as theirs:
        base = make_base(mine)
        assert theirs.get(f"/v2/signed-urls/{base['id']}").status_code == 404
        assert theirs.delete(f"/v2/signed-urls/{base['id']}").status_code == 404
        assert theirs.get("/v2/signed-urls").json()["data"] == []
        listed = mine.get("/v2/signed-urls").json()["data"]
        assert [b["id"] for b in listed] == [base["id"]]
        assert listed[0]["signing_secret"] == base["signing_secret"]
        assert mine.get(f"/v2/signed-urls/{base['id']}").json()["data"] == base
        url = SignedUrl.sign(base["url"], base["signing_secret"], job)
        assert mine.delete(f"/v2/signed-urls/{base['id']}").status_code == 204
        assert httpx.get(url, headers=_address(), timeout=60).status_code == 404


def test_a_key_without_user_write_cannot_make_a_base(deployment):
    def key_with(scopes: str) -> str:
        key = deployment.key()
        deployment.sql("UPDATE api_keys SET scopes = %s WHERE key_hash = %s", scopes, key_hash(key))
        return key

    with deployment.client(key_with("{task.read,task.write,user.read}")) as api:
        refused = api.post("/v2/signed-urls", json={})
        assert refused.status_code == 403 and "user.write" in refused.json()["message"]
        assert api.get("/v2/signed-urls").status_code == 200
    with deployment.client(key_with("{task.read,task.write}")) as api:
        assert api.get("/v2/signed-urls").status_code == 403


def test_a_failed_job_answers_with_its_error_and_the_job(deployment):
    with deployment.client(deployment.key()) as api:
        base = make_base(api)
    broken = {
        "tasks": {
            "in": base64_import("a.png", b"not a png at all"),
            "c": {"operation": "convert", "input": "in", "output_format": "webp"},
            "e": {"operation": "export/url", "input": "c"},
        }
    }
    url = SignedUrl.sign(base["url"], base["signing_secret"], broken)
    failed = httpx.get(url, headers=_address(), timeout=60)
    assert failed.status_code == 422, failed.text
    body = failed.json()
    assert body["data"]["status"] == "error" and body["code"] and body["message"]
    no_export = {"tasks": {k: v for k, v in broken["tasks"].items() if k != "e"}}
    url = SignedUrl.sign(base["url"], base["signing_secret"], no_export)
    refused = httpx.get(url, headers=_address(), timeout=60)
    assert refused.status_code == 422 and "job.tasks" in refused.json()["errors"]


def test_signed_urls_count_against_the_client_addresss_conversions(deployment, job):
    into = time.time() % 60  # the limit counts in fixed one-minute windows: start early in one
    if into > 30:
        time.sleep(60.5 - into)
    address = _address()
    with deployment.client(deployment.key()) as api:
        base = make_base(api)
    url = SignedUrl.sign(base["url"], base["signing_secret"], job)
    answers = [httpx.get(url, headers=address, timeout=60) for _ in range(CONVERSIONS + 1)]
    assert [a.status_code for a in answers] == [302] * CONVERSIONS + [429]
    assert jobs_of(deployment, base) == CONVERSIONS


def test_a_disabled_owners_urls_stop_working(deployment, job):
    with deployment.client(deployment.key()) as api:
        base = make_base(api)
    url = SignedUrl.sign(base["url"], base["signing_secret"], job)
    deployment.sql(
        "UPDATE users SET disabled_at = now() WHERE id ="
        " (SELECT user_id FROM signed_url_bases WHERE id = %s)",
        base["id"],
    )
    assert httpx.get(url, headers=_address(), timeout=60).status_code == 404
    assert jobs_of(deployment, base) == 0
