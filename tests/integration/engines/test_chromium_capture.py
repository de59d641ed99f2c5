"""capture-website's browser: Chromium in the sandboxed helper, every request fetched by the
worker through the address guard (conversions/browse.py). A page on a "public" host (a name
the test maps to its own server, as test_fetch does) is captured with its pictures, while what
it asks of loopback, link-local and metadata addresses, directly, by redirect or by a name
that resolves elsewhere the second time, is refused. The control: the same page with private
addresses allowed does reach them, so the watch would see a leak."""

from __future__ import annotations

import os

import pypdfium2
import pytest
import pyvips

from appliance.conversions import fetch as fetch_module
from appliance.conversions.browse import GuardedFetcher
from appliance.engines import outside
from appliance.engines.chromium import WEBSITE, ChromiumEngine, ChromiumOptions
from appliance.engines.sandbox import HelperPool, Limits, SandboxedEngine
from appliance.errors import PermanentError
from appliance.security import netguard
from tests.harness.origin import Reply, serve

GREEN_SVG = (
    b'<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100">'
    b'<rect width="100" height="100" fill="#00ff00"/></svg>'
)


PRIVATE = {
    "/private-img.svg": GREEN_SVG,
    "/private-fetch": b"SECRET-FROM-LOOPBACK",
    "/private-redirect": b"SECRET-BY-REDIRECT",
    "/private-rebind": b"SECRET-BY-REBINDING",
}


def site_of(port: list[int]):
    """The test origin's answers: the page, its picture, and the private paths a leak would
    hit (``port``: the origin's own, known once it listens)."""

    def respond(path: str) -> Reply:
        cors = {"Access-Control-Allow-Origin": "*"}
        private = f"http://127.0.0.1:{port[0]}"
        if path == "/page.html":
            page = PAGE.format(private=private, port=port[0]).encode()
            return Reply(200, page, {"Content-Type": "text/html"})
        if path == "/moved":
            return Reply(302, headers={"Location": f"{private}/private-redirect"})
        if path == "/green.svg" or path in PRIVATE:
            kind = "image/svg+xml" if path.endswith(".svg") else "text/plain"
            return Reply(200, PRIVATE.get(path, GREEN_SVG), {"Content-Type": kind, **cors})
        if path == "/public-rebind":
            return Reply(200, b"first answer", {"Content-Type": "text/plain", **cors})
        return Reply(404)

    return respond


PAGE = """<html><body style="margin:0">
<img src="/green.svg" width="100" height="100">
<p>Captured page</p>
<img src="{private}/private-img.svg">
<img src="http://169.254.169.254/latest/meta-data/">
<p id="out"></p>
<script>
const out = document.getElementById("out");
const show = (url) => fetch(url).then(r => r.text())
  .then(t => out.append(" " + t)).catch(() => {{}});
Promise.all([
  show("{private}/private-fetch"),
  show("http://public.test:{port}/moved"),
  show("http://rebind.test:{port}/public-rebind"),
]).then(() => show("http://rebind.test:{port}/private-rebind"))
  .then(() => {{ window.done = true; }});
</script></body></html>"""


@pytest.fixture(scope="module")
def origin():
    port: list[int] = []
    with serve(site_of(port)) as served:
        port.append(served.port)
        yield served


@pytest.fixture
def site(origin):
    origin.requests.clear()
    return origin


def hits(site) -> list[str]:
    return [r.path for r in site.requests]


@pytest.fixture(scope="module")
def pool(work_root):
    pool = HelperPool(work_root / f"capture-{os.getpid()}", Limits(timeout_seconds=90))
    yield pool
    pool.close()


@pytest.fixture
def public_names(monkeypatch):
    """public.test resolves to the test server as if it were public; rebind.test does so
    once, then to the loopback address (DNS rebinding), which the guard checks again."""
    answers = {"rebind.test": 0}

    def resolve(host, port, *, allow_private):
        if host == "public.test":
            return "127.0.0.1"
        if host == "rebind.test":
            answers[host] += 1
            if answers[host] == 1:
                return "127.0.0.1"
            host = "127.0.0.1"
        return netguard.resolve(host, port, allow_private=allow_private)

    monkeypatch.setattr(fetch_module, "resolve", resolve)


def capture(pool, tmp_path, site, fmt, *, allow_private, **options):
    src = tmp_path / f"page.{WEBSITE}"
    src.write_text(f"http://public.test:{site.port}/page.html")
    dst = tmp_path / f"capture-{allow_private}.{fmt}"
    fetcher = GuardedFetcher(src.read_text(), allow_private=allow_private, timeout=10)
    with outside.fetching(fetcher):
        SandboxedEngine(ChromiumEngine(), pool).convert(
            src, dst, WEBSITE, fmt, ChromiumOptions(**options), lambda f: None
        )
    return dst, fetcher


def _text(pdf_path) -> str:
    pdf = pypdfium2.PdfDocument(pdf_path)
    try:
        return "".join(page.get_textpage().get_text_range() for page in pdf)
    finally:
        pdf.close()


WAIT = {"wait_for_expression": "window.done === true"}


def test_a_public_page_is_captured_and_private_targets_are_refused(
    pool, tmp_path, site, public_names
):
    pdf, fetcher = capture(pool, tmp_path, site, "pdf", allow_private=False, **WAIT)
    text = _text(pdf)
    assert "Captured page" in text and "first answer" in text
    assert "SECRET" not in text
    assert {"/page.html", "/green.svg", "/public-rebind", "/moved"} <= set(hits(site))
    assert not [h for h in hits(site) if h.startswith("/private")], hits(site)
    refused = " ".join(fetcher.refused)
    assert "169.254.169.254" in refused and "/private-fetch" in refused
    assert "/moved" in refused and "/private-rebind" in refused


def test_control_with_private_addresses_allowed_the_page_reaches_them(
    pool, tmp_path, site, public_names
):
    pdf, _ = capture(pool, tmp_path, site, "pdf", allow_private=True, **WAIT)
    text = _text(pdf)
    for secret in ("SECRET-FROM-LOOPBACK", "SECRET-BY-REDIRECT", "SECRET-BY-REBINDING"):
        assert secret in text
    assert "/private-img.svg" in hits(site)


def test_a_screenshot_of_a_captured_page_shows_its_pictures(pool, tmp_path, site, public_names):
    png, _ = capture(
        pool,
        tmp_path,
        site,
        "png",
        allow_private=False,
        screenshot_width=400,
        screenshot_height=300,
        **WAIT,
    )
    image = pyvips.Image.new_from_file(str(png))
    assert (image.width, image.height) == (400, 300)
    red, green, blue = image.getpoint(50, 50)[:3]
    assert green > 200 and red < 60 and blue < 60  # the picture, fetched through the worker


def test_a_page_on_a_private_address_is_not_captured(pool, tmp_path, site):
    src = tmp_path / f"page.{WEBSITE}"
    url = f"http://127.0.0.1:{site.port}/page.html"
    src.write_text(url)
    with (
        outside.fetching(GuardedFetcher(url, allow_private=False, timeout=10)),
        pytest.raises(PermanentError) as info,
    ):
        SandboxedEngine(ChromiumEngine(), pool).convert(
            src, tmp_path / "x.pdf", WEBSITE, "pdf", ChromiumOptions(), lambda f: None
        )
    assert info.value.code == "URL_NOT_ALLOWED" and hits(site) == []


def test_a_capture_without_a_fetcher_has_no_network(pool, tmp_path, site):
    src = tmp_path / f"page.{WEBSITE}"
    src.write_text(f"http://127.0.0.1:{site.port}/page.html")
    with pytest.raises(PermanentError):
        SandboxedEngine(ChromiumEngine(), pool).convert(
            src, tmp_path / "x.pdf", WEBSITE, "pdf", ChromiumOptions(), lambda f: None
        )
    assert hits(site) == []
