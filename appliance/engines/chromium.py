"""HTML to PDF and screenshots with Chromium, kept warm (queue `office`).

Debian's chromium, driven over the DevTools protocol by Playwright (its Python package and the
Node driver it carries; no browser download). Inside each sandboxed engine helper one headless
Chromium runs for as long as the helper lives, is replaced after
``APPLIANCE_CHROMIUM_RESTART_AFTER`` pages (it grows with use) and whenever it has died. Local
documents are rendered one after the other in one reused page, each at a made-up site of its
own (``https://<128 random bits>.invalid/``), so cookies, storage and cache, all kept per site,
never pass from one document to the next; a fresh context and renderer per document cost about
three times the CPU. A website capture gets a fresh context of its own (real sites' cookies).

The network: Chromium runs in the helper's sandbox, which has none, and every request it makes
is intercepted (Playwright's routing). A local document (html; markdown is routed here through
pandoc's html) is served from its file at its made-up address, and any other request is
refused: a local conversion has no network at all, and ``file://`` is
never reachable (a page from an https origin may not load local files, and the sandbox shows
none of the host's). A website capture (``capture-website``: the source is a ``website`` file
holding the URL) asks the worker for each request (``outside.py``), which fetches it through
the address guard. A proxy that does not exist is configured as well, so that a request the
routing missed goes nowhere even with the sandbox off.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import logging
import os
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec

from appliance.engines import Descriptor, Progress, outside
from appliance.engines.tools import tool_version
from appliance.errors import PermanentError, RetryableError

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Playwright, Route

log = logging.getLogger(__name__)

CHROMIUM = "/usr/lib/chromium/chromium"  # the binary: /usr/bin/chromium is a launcher script
DOCUMENT_HOST = "invalid"  # a reserved top-level domain: never resolves anywhere
WEBSITE = "website"  # the source format of a capture: a file holding the URL
IMAGES = ("png", "jpg", "webp")
OUTPUTS = ("pdf", *IMAGES)
LAUNCH_ARGS = [
    "--no-sandbox",  # no namespaces inside bubblewrap; the helper's sandbox is the boundary
    "--disable-gpu",
    "--disable-dev-shm-usage",
    # a proxy nobody listens on, loopback included: what the routing missed goes nowhere
    "--proxy-server=socks5://127.0.0.1:9",
    "--proxy-bypass-list=<-loopback>",
    "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
    "--dns-prefetch-disable",
    "--disable-background-networking",
]
TIMEOUT_MS = 60_000  # one navigation or wait; the helper's wall-clock timeout bounds the whole
PAPER_CM = {  # width, height
    "letter": (21.59, 27.94),
    "legal": (21.59, 35.56),
    "tabloid": (27.94, 43.18),
    "ledger": (43.18, 27.94),
    "a0": (84.1, 118.9),
    "a1": (59.4, 84.1),
    "a2": (42.0, 59.4),
    "a3": (29.7, 42.0),
    "a4": (21.0, 29.7),
    "a5": (14.8, 21.0),
    "a6": (10.5, 14.8),
}
PAGES = r"^\s*\d+(\s*-\s*\d+)?(\s*,\s*\d+(\s*-\s*\d+)?)*\s*$"
Millimetres = Annotated[float, msgspec.Meta(ge=0, le=500)]
Centimetres = Annotated[float, msgspec.Meta(gt=0, le=500)]


class ChromiumOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """CloudConvert's names (its capture-website and html conversions); Gotenberg's options
    map onto them (see the notes) plus the few CloudConvert has no name for."""

    # -- the PDF's pages
    page_format: Literal[tuple(PAPER_CM)] | None = None  # type: ignore[valid-type]
    page_width: Centimetres | None = None  # overrides page_format's width; default A4
    page_height: Centimetres | None = None
    page_orientation: Literal["portrait", "landscape"] = "portrait"
    margin_top: Millimetres = 10.0
    margin_bottom: Millimetres = 10.0
    margin_left: Millimetres = 10.0
    margin_right: Millimetres = 10.0
    zoom: Annotated[float, msgspec.Meta(ge=0.1, le=2.0)] = 1.0  # Chromium's print scale
    print_background: bool = True
    prefer_css_page_size: bool = False  # an @page size in the document wins (Gotenberg)
    display_header_footer: bool = False
    header_template: Annotated[str, msgspec.Meta(max_length=100_000)] | None = None
    footer_template: Annotated[str, msgspec.Meta(max_length=100_000)] | None = None
    pages: Annotated[str, msgspec.Meta(pattern=PAGES)] | None = None  # "1-3,5"
    # print for PDF and screen for images by default
    css_media_type: Literal["print", "screen"] | None = None
    # -- when the page is ready
    wait_until: Literal["load", "domcontentloaded", "networkidle0", "networkidle2"] = "load"
    wait_for_element: Annotated[str, msgspec.Meta(max_length=1000)] | None = None
    wait_for_expression: Annotated[str, msgspec.Meta(max_length=10_000)] | None = None
    wait_time: Annotated[int, msgspec.Meta(ge=0, le=60_000)] = 0  # ms after that
    # -- screenshots (png, jpg, webp)
    screenshot_width: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 1024  # px
    screenshot_height: Annotated[int, msgspec.Meta(ge=1, le=10_000)] | None = None  # None: all
    quality: Annotated[int, msgspec.Meta(ge=1, le=100)] | None = None  # jpg and webp
    omit_background: bool = False  # transparent where the page paints no background


class _Browser:
    """One Chromium and the Playwright driver that holds it, in one thread of its own (the
    sync API belongs to the thread that started it; with the sandbox off, worker threads share
    this engine)."""

    def __init__(self, restart_after: int) -> None:
        self.restart_after = restart_after
        self.served = 0
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None
        self._local: Page | None = None  # see local_page
        self._router: Callable[[Route], None] | None = None
        self.thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="chromium")

    def browser(self) -> Browser:
        """The running browser, started or replaced when due."""
        if self._browser is not None and (
            not self._browser.is_connected() or self.served >= self.restart_after
        ):
            self.stop()
        if self._browser is None:
            from playwright.sync_api import sync_playwright  # ~0.2 s: not at import time

            if self._playwright is None:
                self._playwright = sync_playwright().start()
            self._browser = self._playwright.chromium.launch(
                executable_path=CHROMIUM, args=LAUNCH_ARGS, timeout=TIMEOUT_MS
            )
            self.served = 0
        self.served += 1
        return self._browser

    def alive(self) -> bool:
        return self._browser is not None and self._browser.is_connected()

    def local_page(self, route: Callable[[Route], None]) -> Page:
        """The page local documents are rendered in, one after the other (a fresh context
        and renderer for each cost ~3x the CPU: measured in the notes), with ``route``
        answering its requests. Each document gets an origin of its own (``_PageJob``), so
        none reaches what another left in cookies or storage."""
        browser = self.browser()
        if self._local is None or self._local.is_closed():
            context = browser.new_context(service_workers="block", accept_downloads=False)
            context.set_default_timeout(TIMEOUT_MS)
            context.route("**/*", lambda r: self._router(r) if self._router else r.abort())
            self._local = context.new_page()
        self._router = route
        return self._local

    def done_with_local(self) -> None:
        """Between documents: the page blank again, pages the document opened closed."""
        self._router = None
        if self._local is None or self._local.is_closed():
            return
        self._local.goto("about:blank")
        # The one thing a tab keeps across sites: its name (history keeps only a count)
        self._local.evaluate("window.name = ''")
        for page in self._local.context.pages:
            if page is not self._local:
                page.close()

    def stop(self) -> None:
        self._local = self._router = None
        if self._browser is not None:
            with contextlib.suppress(Exception):  # already gone: its driver reaps it
                self._browser.close()
            self._browser = None


class ChromiumEngine:
    descriptor = Descriptor(
        id="chromium",
        conversions=frozenset(("html", dst) for dst in OUTPUTS),
        options=ChromiumOptions,
        queue="office",
        version=lambda: tool_version(CHROMIUM),
        family="chromium",
        # Below LibreOffice (2.0) for html -> pdf, its better renderer; above 1 so that no
        # docx or odt goes to pdf through pandoc's html instead of LibreOffice. A screenshot
        # costs less than a PDF page rendered after it (1.5 + 1, + 1 for webp) and more than
        # LibreOffice's way to an image from docx, odt or txt (2 + 1, + 1 for webp, against
        # pandoc's html first at 1 or more): only html itself is photographed, never a
        # document on its way through html.
        cost=1.5,
        pair_costs={("html", "png"): 2.2, ("html", "jpg"): 2.2, ("html", "webp"): 3.2},
        requires=(CHROMIUM,),
        packages=("chromium", "fonts-dejavu-core"),
        recycles_itself=True,  # the browser restarts after APPLIANCE_CHROMIUM_RESTART_AFTER
        # Playwright's profile of the running browser and its artifacts directory
        keeps=("playwright*",),
    )

    def __init__(self) -> None:
        self._browser: _Browser | None = None
        self._lock = threading.Lock()  # one page at a time per browser

    def _warm(self) -> _Browser:
        if self._browser is None:
            restart_after = int(os.environ.get("APPLIANCE_CHROMIUM_RESTART_AFTER", "500"))
            self._browser = _Browser(restart_after)
        return self._browser

    def convert(
        self,
        src: Path,
        dst: Path,
        src_format: str,
        dst_format: str,
        options: ChromiumOptions,
        progress: Progress,
    ) -> None:
        if dst_format not in OUTPUTS or src_format not in ("html", WEBSITE):
            raise PermanentError(
                f"chromium cannot make {dst_format} from {src_format}",
                code="INVALID_CONVERSION_TYPE",
            )
        fetch = outside.fetcher() if src_format == WEBSITE else None
        if src_format == WEBSITE and fetch is None:
            raise PermanentError("Capturing a website needs the network", code="CONVERSION_FAILED")
        page = _PageJob(src, dst, dst_format, options, fetch)
        with self._lock:
            warm = self._warm()
            warm.thread.submit(page.run, warm, progress).result()


class _PageJob:
    """One conversion, run in the browser's thread."""

    def __init__(
        self,
        src: Path,
        dst: Path,
        dst_format: str,
        options: ChromiumOptions,
        fetch: outside.Fetcher | None,
    ) -> None:
        self.src, self.dst, self.dst_format = src, dst, dst_format
        self.options = options
        self.fetch = fetch
        self.refused: list[str] = []  # requests refused (for the log)
        self.first: outside.FetchReply | None = None  # a capture's page, fetched already
        self.url = ""  # a local document's made-up address

    def run(self, warm: _Browser, progress: Progress) -> None:
        from playwright.sync_api import Error, TimeoutError

        try:
            if self.fetch is None:
                self._local(warm, progress)
            else:
                self._capture(warm, progress)
            if self.refused:  # what a document asked for in vain (the log only)
                log.info("refused %d requests, e.g. %s", len(self.refused), self.refused[0])
        except TimeoutError as exc:
            raise PermanentError(
                "The page did not get ready in time (wait_until, wait_for_element, "
                "wait_for_expression)",
                code="ENGINE_TIMEOUT",
            ) from exc
        except Error as exc:
            # The browser's death may reach the driver after the page's error says so.
            if not warm.alive() or "closed" in str(exc) or "crashed" in str(exc).lower():
                warm.stop()  # the next page starts another
                raise RetryableError("Chromium stopped", code="ENGINE_CRASHED") from exc
            raise PermanentError(
                f"Chromium could not render the page: {str(exc).splitlines()[0][:200]}",
                code="INVALID_INPUT_FILE",
            ) from exc

    def _local(self, warm: _Browser, progress: Progress) -> None:
        """A local document, in the browser's reused page, at an origin of its own."""
        from playwright.sync_api import Error

        # A made-up site per document: cookies, storage and cache are kept per site, and no
        # document can name another's (128 random bits).
        self.url = f"https://{uuid.uuid4().hex}.{DOCUMENT_HOST}/index.html"
        page = warm.local_page(self._route)
        try:
            self._render(page, progress)
        finally:
            with contextlib.suppress(Error):
                warm.done_with_local()

    def _capture(self, warm: _Browser, progress: Progress) -> None:
        """A website, in a context of its own (real sites' cookies stay with one capture)."""
        from playwright.sync_api import Error

        context = warm.browser().new_context(
            service_workers="block",  # their fetches would escape the page's routing
            accept_downloads=False,
        )
        try:
            context.set_default_timeout(TIMEOUT_MS)
            context.route("**/*", self._route)
            self._render(context.new_page(), progress)
        finally:
            with contextlib.suppress(Error):
                context.close()

    def _render(self, page: Page, progress: Progress) -> None:
        page.set_viewport_size({"width": self.options.screenshot_width, "height": 800})
        page.emulate_media(media=self.media())  # before the page's scripts ask
        self._open(page)
        progress(0.5)
        self._wait(page)
        self._save(page)
        progress(1.0)

    # -- where the page comes from
    def _open(self, page: Page) -> None:
        until = self.options.wait_until
        wait: Any = "networkidle" if until.startswith("networkidle") else until
        if self.fetch is None:
            page.goto(self.url, wait_until=wait)
            return
        url = self.src.read_text().strip()
        # Chromium does not follow a redirect a route answers with, so the worker follows
        # them (checking each hop) and the page is opened at the address they end at.
        self.first = self.fetch(outside.FetchRequest(method="GET", url=url))
        if self.first.error is not None:
            raise PermanentError(
                f"Could not load {url}: {self.first.error}",
                code=self.first.code or "CONVERSION_FAILED",
            )
        page.goto(self.first.url, wait_until=wait)

    def _route(self, route: Route) -> None:
        request = route.request
        url = request.url
        if self.fetch is None:
            if url == self.url:
                route.fulfill(status=200, body=self.src.read_bytes(), content_type="text/html")
            else:
                self.refused.append(url)
                route.abort("blockedbyclient")
            return
        if self.first is not None and url == self.first.url and request.is_navigation_request():
            reply, self.first = self.first, None  # the page itself: fetched already
        else:
            body = request.post_data_buffer
            reply = self.fetch(
                outside.FetchRequest(
                    method=request.method,
                    url=url,
                    headers={k: v for k, v in request.headers.items() if k.lower() != "host"},
                    body=base64.b64encode(body).decode() if body else None,
                )
            )
        if reply.error is not None:
            self.refused.append(url)
            route.abort("blockedbyclient")
            return
        route.fulfill(status=reply.status, headers=reply.headers, body=reply.content())

    # -- when it is ready, and the output
    def _wait(self, page: Page) -> None:
        o = self.options
        if o.wait_for_element:
            page.wait_for_selector(o.wait_for_element, state="attached")
        if o.wait_for_expression:
            page.wait_for_function(o.wait_for_expression)
        if o.wait_time:
            page.wait_for_timeout(o.wait_time)

    def media(self) -> Literal["print", "screen"]:
        """The CSS media type the page is rendered for: print for a PDF, screen for images."""
        return self.options.css_media_type or ("print" if self.dst_format == "pdf" else "screen")

    def _save(self, page: Page) -> None:
        o = self.options
        if self.dst_format == "pdf":
            page.pdf(path=self.dst, **pdf_arguments(o))
            return
        if o.screenshot_height is not None:
            page.set_viewport_size({"width": o.screenshot_width, "height": o.screenshot_height})
        image: dict[str, Any] = {"type": "jpeg" if self.dst_format == "jpg" else "png"}
        if self.dst_format == "jpg" and o.quality is not None:
            image["quality"] = o.quality
        shot = page.screenshot(
            full_page=o.screenshot_height is None,
            omit_background=o.omit_background and self.dst_format != "jpg",
            **image,
        )
        if self.dst_format == "webp":  # Playwright takes png and jpeg only
            shot = _webp(shot, o.quality)
        self.dst.write_bytes(shot)


def _webp(png: bytes, quality: int | None) -> bytes:
    import pyvips

    image = pyvips.Image.new_from_buffer(png, "")
    return image.webpsave_buffer(Q=quality or 80)  # type: ignore[no-any-return]


def pdf_arguments(o: ChromiumOptions) -> dict[str, Any]:
    """Playwright's ``page.pdf`` arguments for the options."""
    width, height = PAPER_CM[o.page_format or "a4"]
    if o.page_format is None:
        width, height = o.page_width or width, o.page_height or height
    args: dict[str, Any] = {
        "width": f"{width}cm",
        "height": f"{height}cm",
        "landscape": o.page_orientation == "landscape",
        "scale": o.zoom,
        "print_background": o.print_background,
        "prefer_css_page_size": o.prefer_css_page_size,
        "margin": {
            "top": f"{o.margin_top}mm",
            "bottom": f"{o.margin_bottom}mm",
            "left": f"{o.margin_left}mm",
            "right": f"{o.margin_right}mm",
        },
        "display_header_footer": o.display_header_footer,
    }
    if o.display_header_footer:
        # Chromium's own defaults (date, title; url, page numbers) when none is given
        if o.header_template is not None:
            args["header_template"] = o.header_template
        if o.footer_template is not None:
            args["footer_template"] = o.footer_template
    if o.pages:
        args["page_ranges"] = o.pages.replace(" ", "")
    return args
