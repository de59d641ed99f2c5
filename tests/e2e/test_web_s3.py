"""The web UI's conversion path on the S3 deployment: the upload goes to the API's own route,
the output is downloaded from the storage's presigned URL."""

from __future__ import annotations

import json

import httpx
import pytest
import pyvips

from tests.e2e.webclient import signed_in

pytestmark = pytest.mark.parametrize("deployment", ["s3"], indirect=True)


def test_convert_through_the_web_routes_with_s3_storage(deployment, png_file, tmp_path):
    browser, _ = signed_in(deployment)
    job = browser.post_json(
        "/ui/jobs", {"filename": "photo.png", "output_format": "jpg", "options": {"height": 30}}
    ).json()
    form = job["upload"]["form"]
    assert form["url"].startswith(deployment.url)  # same origin as the page (CSP connect-src)
    with open(png_file, "rb") as fh:
        assert httpx.post(form["url"], data=form["parameters"], files={"file": fh}).is_success
    events = browser.http.get(f"/ui/jobs/{job['id']}/events").text.splitlines()
    end = json.loads(events[events.index("event: end") + 1].removeprefix("data: "))
    assert end["status"] == "finished" and end["percent"] == 100
    (output,) = end["files"]
    body = httpx.get(output["url"], timeout=30)
    assert body.status_code == 200 and len(body.content) == output["size"]
    (tmp_path / "o.jpg").write_bytes(body.content)
    assert pyvips.Image.new_from_file(str(tmp_path / "o.jpg")).height == 30
