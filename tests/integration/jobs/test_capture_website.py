"""capture-website jobs end to end: a worker captures a page through the sandboxed Chromium,
every request through the address guard; the task's headers reach the page's own origin only;
a page on a private address fails with URL_NOT_ALLOWED."""

from __future__ import annotations

import pypdfium2
import pytest

from appliance.conversions import fetch as fetch_module
from appliance.security import netguard
from tests.harness.origin import Reply, serve
from tests.integration.jobs.conftest import task

pytestmark = pytest.mark.parametrize("settings", ["local"], indirect=True)


@pytest.fixture
def site(monkeypatch):
    """The test origin, reached as public.test (a name the guard takes as public, as
    test_fetch does); its own address stays loopback, which the guard refuses."""
    port: list[int] = []

    def respond(path: str) -> Reply:
        if path != "/page.html":
            return Reply(200, b"PRIVATE DATA", {"Access-Control-Allow-Origin": "*"})
        page = (
            "<p>Invoice 42</p><script>fetch('http://127.0.0.1:"
            f"{port[0]}/private').then(r => r.text()).then(t => document.body.append(t))"
            "</script>"
        )
        return Reply(200, page.encode(), {"Content-Type": "text/html"})

    def resolve(host, port_, *, allow_private):
        if host == "public.test":
            return "127.0.0.1"
        return netguard.resolve(host, port_, allow_private=allow_private)

    monkeypatch.setattr(fetch_module, "resolve", resolve)
    with serve(respond) as origin:
        port.append(origin.port)
        yield origin


def test_a_captured_page_becomes_a_pdf_without_reaching_private_addresses(system, site, tmp_path):
    job = system.create(
        {
            "cap": {
                "operation": "capture-website",
                "url": f"http://public.test:{site.port}/page.html",
                "output_format": "pdf",
                "headers": {"Authorization": "Bearer page-only"},
                "wait_until": "networkidle0",
            },
            "out": {"operation": "export/url", "input": "cap"},
        }
    )
    job = system.wait(job["id"], timeout=180)
    assert job["status"] == "finished", job
    cap = task(job, "cap")
    assert cap["engine"] == "chromium" and "headers" not in cap["payload"]
    name = cap["result"]["files"][0]["filename"]
    assert name == "public.test.pdf"
    out = tmp_path / "capture.pdf"
    system.rt.storage.get_to_path(_key(system, job), out)
    pdf = pypdfium2.PdfDocument(out)
    text = "".join(page.get_textpage().get_text_range() for page in pdf)
    pdf.close()
    assert "Invoice 42" in text and "PRIVATE" not in text
    # the private fetch never came; the header went to the page's origin
    assert [(r.path, r.headers.get("Authorization")) for r in site.requests] == [
        ("/page.html", "Bearer page-only")
    ]


def _key(system, job):
    url = task(job, "out")["result"]["files"][0]["url"]
    return url.split("/v2/files/", 1)[1].split("?")[0].rsplit("/", 1)[0]


def test_a_page_on_a_private_address_fails_with_url_not_allowed(system, site):
    job = system.create(
        {
            "cap": {
                "operation": "capture-website",
                "url": f"http://127.0.0.1:{site.port}/page.html",
                "output_format": "png",
            }
        }
    )
    job = system.wait(job["id"], timeout=180)
    assert job["status"] == "error"
    assert task(job, "cap")["code"] == "URL_NOT_ALLOWED" and site.requests == []
