"""The check of a signed URL, against URLs the official SDK's ``SignedUrl.sign`` builds."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from cloudconvert.signed_url import SignedUrl

from appliance.conversions.signed_urls import (
    check_cache_key,
    check_expiry,
    check_tasks,
    decode_job,
    signature,
    signed_parameters,
)
from appliance.errors import Forbidden, InvalidData

BASE = "https://convert.example.com/v2/s/0b0e4c41-58b5-4a4b-9b0c-2d5f8f0bd0a7"
SECRET = "a-signing-secret"
JOB = {
    "tasks": {
        "i": {"operation": "import/url", "url": "https://example.com/a.png"},
        "c": {"operation": "convert", "input": "i", "output_format": "webp"},
        "e": {"operation": "export/url", "input": "c"},
    }
}


def query_of(url: str) -> str:
    return url.split("?", 1)[1]


def test_a_url_the_sdk_signed_is_accepted_with_its_parameters():
    url = SignedUrl.sign(BASE, SECRET, JOB, "key-1")
    params = signed_parameters([BASE], SECRET, query_of(url))
    assert params is not None and params["cache_key"] == "key-1"
    assert decode_job(params["job"], 10_000).tasks == JOB["tasks"]


def test_padding_and_every_base64_length_decode():
    for n in range(4):  # three lengths of padding and none
        job = {**JOB, "tag": "x" * n}
        url = SignedUrl.sign(BASE, SECRET, job)
        params = signed_parameters([BASE], SECRET, query_of(url))
        assert params is not None and decode_job(params["job"], 10_000).tag == "x" * n


def test_a_percent_encoded_query_still_verifies():
    query = query_of(SignedUrl.sign(BASE, SECRET, JOB))
    encoded = query.replace("=", "%3D").replace("%3D", "=", 1)  # job=... with %3D padding
    encoded = encoded[: encoded.rindex("&s%3D")] + "&s=" + query.rsplit("&s=", 1)[1]
    assert encoded != query
    assert signed_parameters([BASE], SECRET, encoded) is not None


def test_a_changed_job_signature_base_or_secret_is_refused():
    query = query_of(SignedUrl.sign(BASE, SECRET, JOB))
    other = query_of(SignedUrl.sign(BASE, SECRET, {**JOB, "tag": "other"}))
    swapped = other.rsplit("&s=", 1)[0] + "&s=" + query.rsplit("&s=", 1)[1]
    flipped = query[:-1] + ("0" if query[-1] != "0" else "1")
    assert signed_parameters([BASE], SECRET, swapped) is None
    assert signed_parameters([BASE], SECRET, flipped) is None
    assert signed_parameters([BASE + "0"], SECRET, query) is None
    assert signed_parameters([BASE], SECRET + "x", query) is None


def test_a_parameter_added_after_the_signature_is_refused():
    query = query_of(SignedUrl.sign(BASE, SECRET, JOB))
    assert signed_parameters([BASE], SECRET, query + "&cache_key=mine") is None
    assert signed_parameters([BASE], SECRET, query.rsplit("&s=", 1)[0]) is None  # unsigned


def test_an_expires_parameter_is_covered_by_the_signature():
    job = query_of(SignedUrl.sign(BASE, SECRET, JOB)).split("&s=")[0]
    signed = f"{job}&expires=2000000000"
    query = f"{signed}&s={signature(SECRET, f'{BASE}?{signed}')}"
    assert signed_parameters([BASE], SECRET, query) == {
        "job": job[4:],
        "expires": "2000000000",
    }
    extended = query.replace("expires=2000000000", "expires=2000000001")
    assert signed_parameters([BASE], SECRET, extended) is None


def test_unknown_or_repeated_signed_parameters_are_422():
    for extra in ("&foo=1", "&cache_key=a&cache_key=b"):
        signed = query_of(SignedUrl.sign(BASE, SECRET, JOB)).split("&s=")[0] + extra
        query = f"{signed}&s={signature(SECRET, f'{BASE}?{signed}')}"
        with pytest.raises(InvalidData):
            signed_parameters([BASE], SECRET, query)


def test_expiry_in_the_job_or_the_query_the_earlier_counts():
    job = decode_job(query_of(SignedUrl.sign(BASE, SECRET, {**JOB, "expires": 100}))[4:], 10_000)
    check_expiry({}, job, 99)
    with pytest.raises(Forbidden) as refused:
        check_expiry({}, job, 100)
    assert refused.value.code == "SIGNED_URL_EXPIRED"
    with pytest.raises(Forbidden):
        check_expiry({"expires": "50"}, job, 60)
    with pytest.raises(InvalidData):
        check_expiry({"expires": "soon"}, job, 60)


def test_a_job_needs_one_export_url_and_no_upload():
    check_tasks(JOB["tasks"])
    with pytest.raises(InvalidData):
        check_tasks({k: v for k, v in JOB["tasks"].items() if k != "e"})
    with pytest.raises(InvalidData):
        check_tasks({**JOB["tasks"], "e2": {"operation": "export/url", "input": "c"}})
    with pytest.raises(InvalidData):
        check_tasks({**JOB["tasks"], "u": {"operation": "import/upload"}})


def test_a_job_that_is_no_base64_json_or_too_large_is_422():
    for text in ("!!!", quote("{}"), "eyJ0YXNrcyI6IDF9"):  # the last: {"tasks": 1}
        with pytest.raises(InvalidData):
            decode_job(text, 10_000)
    with pytest.raises(InvalidData) as large:
        decode_job(query_of(SignedUrl.sign(BASE, SECRET, JOB))[4:], 50)
    assert large.value.code == "BODY_TOO_LARGE"


def test_cache_keys_take_cloudconverts_characters():
    assert check_cache_key("a-Z_0") == "a-Z_0"
    assert check_cache_key(None) is None
    for bad in ("", "a b", "a/b", "x" * 129):
        with pytest.raises(InvalidData):
            check_cache_key(bad)
