"""The web UI in a real browser: Debian's chromium, headless, driven by Playwright (the
system browser; Playwright downloads none). A person accepts an invitation, signs in, drops a
docx and three images on the page, watches each reach 100%, downloads every output and a zip
of them all, fails a conversion on purpose and reads why, and revokes an API key.

With APPLIANCE_SCREENSHOTS=DIR the main pages are saved there as PNG (the README's)."""

from __future__ import annotations

import base64
import os
import subprocess
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pypdfium2
import pytest
import pyvips
from playwright.sync_api import Browser, expect, sync_playwright

from tests.e2e.webclient import PASSWORD, invite

pytestmark = pytest.mark.parametrize("deployment", ["local"], indirect=True)
CHROMIUM = "/usr/bin/chromium"  # Debian's package (scripts/install.sh --dev)
PHONE = {"width": 390, "height": 844}
# The first formats list and the first LibreOffice start take a while on a busy 2-core host.
expect.set_options(timeout=30_000)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    with sync_playwright() as pw:
        # --no-sandbox: the tests run as root, where chromium's own sandbox cannot start.
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


class Person:
    """One browser context (its own cookies), watching for Content-Security-Policy reports."""

    def __init__(self, browser: Browser, base: str, tmp: Path, **context: object) -> None:
        self.context = browser.new_context(base_url=base, accept_downloads=True, **context)
        self.page = self.context.new_page()
        self.page.set_default_timeout(60_000)
        self.tmp = tmp
        self.console: list[str] = []
        self.page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        # Where a violation came from (file, line, the blocked text), for the failure message.
        self.context.add_init_script(
            """document.addEventListener("securitypolicyviolation", (e) => console.log(
                "Content Security Policy violation", e.violatedDirective, e.sourceFile,
                e.lineNumber, e.columnNumber, e.sample));"""
        )

    def csp_violations(self) -> list[str]:
        return [m for m in self.console if "Content Security Policy" in m]

    def accept_invitation(self, link: str) -> None:
        self.page.goto(httpx.URL(link).path)
        self.page.get_by_label("Password").fill(PASSWORD)
        self.page.get_by_role("button", name="Set the password and sign in").click()
        expect(self.page.get_by_role("heading", name="Convert files")).to_be_visible()

    def sign_in(self, email: str) -> None:
        self.page.goto("/sign-in")
        self.page.get_by_label("E-mail address").fill(email)
        self.page.get_by_label("Password").fill(PASSWORD)
        self.page.get_by_role("button", name="Sign in").click()
        expect(self.page.get_by_role("heading", name="Convert files")).to_be_visible()

    def drop(self, files: list[Path]) -> None:
        """Drop the files on the drop zone as a person's drag and drop does (a drop event
        whose DataTransfer holds them)."""
        payload = [
            {"name": p.name, "b64": base64.b64encode(p.read_bytes()).decode()} for p in files
        ]
        transfer = self.page.evaluate_handle(
            """(files) => {
                const dt = new DataTransfer();
                for (const f of files) {
                    const bytes = Uint8Array.from(atob(f.b64), (c) => c.charCodeAt(0));
                    dt.items.add(new File([bytes], f.name));
                }
                return dt;
            }""",
            payload,
        )
        self.page.dispatch_event("#drop", "dragenter", {"dataTransfer": transfer})
        self.page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})

    def download(self, link_name: str) -> Path:
        with self.page.expect_download() as info:
            self.page.get_by_role("link", name=link_name).click()
        path = self.tmp / info.value.suggested_filename
        info.value.save_as(path)
        return path

    def shot(self, name: str) -> None:
        folder = os.environ.get("APPLIANCE_SCREENSHOTS")
        self.page.screenshot(path=str(Path(folder or self.tmp) / f"{name}.png"), full_page=True)


@pytest.fixture
def person(chromium, deployment, tmp_path) -> Iterator[Person]:
    p = Person(chromium, deployment.url, tmp_path)
    yield p
    p.context.close()


def make_inputs(tmp: Path) -> list[Path]:
    md = tmp / "letter.md"
    md.write_text("# A letter\n\nDear reader, this came through the web page.\n")
    docx = tmp / "letter.docx"
    subprocess.run(["pandoc", "-o", str(docx), str(md)], check=True, timeout=60)
    images = []
    for i, (name, colour) in enumerate((("red.png", [200, 30, 30]), ("green.jpg", [30, 160, 60]),
                                        ("blue.webp", [40, 60, 200]))):  # fmt: skip
        path = tmp / name
        pyvips.Image.black(320 + 10 * i, 240).bandjoin([0, 0]).linear([1, 1, 1], colour).cast(
            "uchar"
        ).write_to_file(str(path))
        images.append(path)
    return [docx, *images]


def test_sign_in_convert_a_docx_and_three_images_by_drag_and_drop(person, deployment, tmp_path):
    email = f"b{uuid.uuid4().hex[:8]}@example.test"
    person.accept_invitation(invite(deployment, email))
    person.page.get_by_role("button", name=f"Sign out {email}").click()
    expect(person.page.get_by_role("heading", name="Sign in")).to_be_visible()
    person.shot("sign-in")
    person.sign_in(email)

    (tmp_path / "in").mkdir()
    inputs = make_inputs(tmp_path / "in")
    person.drop(inputs)
    page = person.page
    expect(page.locator("#queue li")).to_have_count(4)
    expect(page.get_by_label("Convert to")).to_be_enabled()
    page.get_by_label("Convert to").select_option("pdf")
    page.get_by_role("button", name="Convert", exact=True).click()
    for item in page.locator("#queue li").all():
        expect(item.get_by_role("status")).to_have_text("Done 100%", timeout=120_000)
        expect(item.locator("progress")).to_have_attribute("value", "100")
    person.shot("convert")

    for src in inputs:
        out = person.download(f"Download {src.stem}.pdf")
        pdf = pypdfium2.PdfDocument(str(out))
        assert len(pdf) == 1
        if src.suffix == ".docx":
            assert "came through the web page" in pdf[0].get_textpage().get_text_range()
        else:
            width, height = pdf[0].get_size()
            assert width > height  # the landscape images stayed landscape

    page.get_by_role("button", name="Download all as a zip").click()
    archive = person.download("Download converted.zip")
    with zipfile.ZipFile(archive) as z:
        assert sorted(z.namelist()) == sorted(f"{p.stem}.pdf" for p in inputs)
        assert all(z.read(n).startswith(b"%PDF") for n in z.namelist())
    assert person.csp_violations() == []


def test_a_failed_conversion_says_why_in_plain_words(person, deployment, tmp_path):
    person.accept_invitation(invite(deployment, f"f{uuid.uuid4().hex[:8]}@example.test"))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 300)
    person.drop([broken])
    page = person.page
    page.get_by_label("Convert to").select_option("jpg")
    page.get_by_role("button", name="Convert", exact=True).click()
    status = page.locator("#queue li").get_by_role("status")
    expect(status).to_contain_text("Failed: ", timeout=60_000)
    said = status.inner_text()
    assert "could not be read: it may be damaged" in said, said
    page.get_by_role("link", name="History").click()
    expect(page.locator("tr.job-error .error")).to_contain_text(said.removeprefix("Failed: "))
    person.shot("history")
    assert person.csp_violations() == []


def test_create_and_revoke_an_api_key(person, deployment):
    person.accept_invitation(invite(deployment, f"k{uuid.uuid4().hex[:8]}@example.test"))
    page = person.page
    page.get_by_role("link", name="API keys").click()
    page.get_by_label("Name of a new key").fill("build server")
    page.get_by_role("button", name="Create a key").click()
    key = page.locator("#new-key").inner_text()
    assert key.startswith("apl_")
    with deployment.client(key) as api:
        assert api.get("/v2/jobs").status_code == 200
        person.shot("keys")
        page.once("dialog", lambda dialog: dialog.accept())
        page.get_by_role("button", name="Revoke the key build server").click()
        expect(page.locator("#keys")).to_contain_text("revoked")
        assert api.get("/v2/jobs").status_code == 401
    assert person.csp_violations() == []


def test_the_operator_page_and_a_phone_sized_screen(chromium, deployment, tmp_path):
    phone = Person(chromium, deployment.url, tmp_path, viewport=PHONE, is_mobile=True)
    try:
        phone.accept_invitation(invite(deployment, f"o{uuid.uuid4().hex[:8]}@example.test", True))
        page = phone.page
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"]  # nothing sticks out sideways on a phone
        phone.shot("convert-phone")
        page.get_by_role("link", name="Operator").click()
        expect(page.get_by_role("heading", name="Queues")).to_be_visible()
        expect(page.locator("table").first).to_contain_text("light")
        phone.shot("operator-phone")
        page.get_by_role("link", name="Usage").click()
        expect(page.get_by_role("heading", name="Usage")).to_be_visible()
        assert phone.csp_violations() == []
    finally:
        phone.context.close()


def test_image_options_apply_to_image_targets_only(person, deployment, tmp_path):
    person.accept_invitation(invite(deployment, f"i{uuid.uuid4().hex[:8]}@example.test"))
    src = make_inputs(tmp_path)[1]  # red.png, 320 x 240
    person.drop([src])
    page = person.page
    page.get_by_label("Convert to").select_option("pdf")
    expect(page.get_by_label("Width (pixels)")).to_be_hidden()
    page.get_by_label("Convert to").select_option("webp")
    page.get_by_label("Width (pixels)").fill("80")
    page.get_by_role("button", name="Convert", exact=True).click()
    expect(page.locator("#queue li").get_by_role("status")).to_have_text("Done 100%")
    out = person.download("Download red.webp")
    image = pyvips.Image.new_from_file(str(out))
    assert (image.width, image.height) == (80, 60)
