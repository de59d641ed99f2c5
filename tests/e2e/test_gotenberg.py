"""Gotenberg's routes driven by gotenberg-client (PyPI), unchanged but for its base URL and its
basic auth (an API key as the password), against a real deployment: LibreOffice conversions,
merges, splits, metadata, PDF/A, encryption, flattening, attachments, Chromium's pages,
screenshots and captures, health and version, errors in Gotenberg's shape, and webhooks
delivered to a receiver on loopback by the worker processes' outbox senders."""

from __future__ import annotations

import io
import json
import subprocess
import zipfile
from pathlib import Path

import httpx
import pikepdf
import pytest
import pyvips
from gotenberg_client import GotenbergClient, HttpStatusError, SingleFileResponse, ZipFileResponse
from gotenberg_client.options import PdfAFormat

from tests.harness.origin import always, serve
from tests.harness.receiver import Receiver

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus" / "real"
DOCX = CORPUS / "gotenberg-pages_12.docx"  # 12 pages
ODT = CORPUS / "pypdf-trivial-source.odt"
PDF = CORPUS / "gotenberg-pages_3.pdf"  # 3 pages
FORM = CORPUS / "pypdf-pdflatex-forms.pdf"  # a text field (Name), a check box, a button

# The local deployment: it allows private addresses, so webhooks reach the receiver.
pytestmark = pytest.mark.parametrize("deployment", ["local"], indirect=True)
# A first LibreOffice conversion starts its listener: room for it on a loaded machine
# webhook retries a second apart, so a test sees one
DEPLOYMENT_ENV = {"APPLIANCE_SYNC_TIMEOUT_SECONDS": "120", "APPLIANCE_WEBHOOK_BACKOFF_SECONDS": "1"}


def pdf_text(data: bytes) -> str:
    """The PDF's text as poppler's pdftotext reads it (a reader independent of the engine)."""
    done = subprocess.run(["pdftotext", "-", "-"], input=data, capture_output=True, check=True)
    return done.stdout.decode()


def pages(data: bytes) -> int:
    with pikepdf.open(io.BytesIO(data)) as pdf:
        return len(pdf.pages)


@pytest.fixture
def key(deployment) -> str:
    return deployment.key()


@pytest.fixture
def gotenberg(deployment, key):
    with GotenbergClient(deployment.url, auth=("any-user", key), timeout=180) as client:
        yield client


@pytest.fixture
def receiver():
    r = Receiver().start()
    yield r
    r.stop()


def test_libreoffice_converts_a_docx_to_its_pdf(gotenberg):
    with gotenberg.libre_office.to_pdf() as route:
        response = route.convert(DOCX).trace_id("trace-1").run()
    assert isinstance(response, SingleFileResponse)
    assert response.status_code == 200 and response.content.startswith(b"%PDF")
    assert pages(response.content) == 12
    assert response.headers["gotenberg-trace"] == "trace-1"
    assert response.headers["content-type"] == "application/pdf"
    assert 'filename="gotenberg-pages_12.pdf"' in response.headers["content-disposition"]


def test_libreoffice_answers_a_zip_for_several_files_and_one_pdf_when_merged(gotenberg):
    with gotenberg.libre_office.to_pdf() as route:
        response = route.convert_files([DOCX, ODT]).run()
    assert isinstance(response, ZipFileResponse)
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        names = sorted(archive.namelist())
        assert names == ["gotenberg-pages_12.pdf", "pypdf-trivial-source.pdf"]
        assert pages(archive.read("gotenberg-pages_12.pdf")) == 12
    with gotenberg.libre_office.to_pdf() as route:
        merged = route.convert_files([DOCX, ODT]).merge(merge=True).run()
    assert isinstance(merged, SingleFileResponse)
    assert pages(merged.content) == 12 + pages(_single(gotenberg, ODT))


def _single(gotenberg, path: Path) -> bytes:
    with gotenberg.libre_office.to_pdf() as route:
        return bytes(route.convert(path).run().content)


def test_libreoffice_page_ranges_and_pdf_a_2b_are_libreoffice_s_own(gotenberg):
    with gotenberg.libre_office.to_pdf() as route:
        response = route.convert(DOCX).page_ranges("2-4").pdf_format(PdfAFormat.A2b).run()
    assert pages(response.content) == 3
    with pikepdf.open(io.BytesIO(response.content)) as pdf:
        assert pdf.open_metadata().pdfa_status == "2B"


def test_gotenberg_7_field_names_are_answered_too(deployment, key):
    """v7 named PDF/A ``pdfFormat``; its paths are v8's."""
    r = httpx.post(
        deployment.url + "/forms/libreoffice/convert",
        files={"d.docx": ("d.docx", DOCX.read_bytes())},
        data={"pdfFormat": "PDF/A-2b", "nativePageRanges": "1"},
        headers={"Authorization": f"Bearer {key}"},
        timeout=180,
    )
    assert r.status_code == 200, r.text
    with pikepdf.open(io.BytesIO(r.content)) as pdf:
        assert len(pdf.pages) == 1 and pdf.open_metadata().pdfa_status == "2B"


def test_pdf_engines_merge_in_the_client_s_order_and_split_per_page(gotenberg):
    with gotenberg.merge.merge() as route:
        merged = route.merge([PDF, PDF]).output_filename("both").run()
    assert pages(merged.content) == 6
    assert 'filename="both.pdf"' in merged.headers["content-disposition"]
    with gotenberg.split.split() as route:
        split = route.split(PDF).split_mode("intervals").split_span("1").run()
    assert isinstance(split, ZipFileResponse)
    with zipfile.ZipFile(io.BytesIO(split.content)) as archive:
        assert len(archive.namelist()) == 3
        assert all(pages(archive.read(n)) == 1 for n in archive.namelist())


def test_metadata_read_answers_each_file_s_metadata_by_name(gotenberg):
    with gotenberg.metadata.read() as route:
        found = route.read(PDF).run()
    assert list(found) == ["gotenberg-pages_3.pdf"]
    assert found["gotenberg-pages_3.pdf"]["PageCount"] == 3


def test_health_is_gotenberg_s_shape_and_version_needs_a_key(deployment, gotenberg):
    status = gotenberg.health.health()
    assert status.overall.value == "up" and status.uno is not None
    assert httpx.head(deployment.url + "/health").status_code == 200
    assert gotenberg.version.get().startswith("9.")
    assert httpx.get(deployment.url + "/version").status_code == 401


def test_keys_are_checked_bearer_and_basic_and_refusals_are_plain_text(deployment, key):
    files = {"a.pdf": ("a.pdf", PDF.read_bytes())}
    url = deployment.url + "/forms/pdfengines/metadata/read"
    bad = httpx.post(url, files=files, auth=("user", "not-a-key"), timeout=30)
    assert bad.status_code == 401 and bad.text == "Unauthorized"
    assert bad.headers["www-authenticate"].lower().startswith("basic")
    assert bad.headers["content-type"].startswith("text/plain") and bad.headers["gotenberg-trace"]
    ok = httpx.post(url, files=files, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    assert ok.status_code == 200 and "a.pdf" in ok.json()


def test_form_errors_are_gotenberg_s(deployment, key):
    headers = {"Authorization": f"Bearer {key}"}
    url = deployment.url + "/forms/pdfengines/split"
    r = httpx.post(url, files={"a.pdf": ("a.pdf", PDF.read_bytes())}, headers=headers, timeout=30)
    assert (
        r.status_code == 400 and r.text == "Invalid form data: form field 'splitMode' is required"
    )
    r = httpx.post(
        deployment.url + "/forms/libreoffice/convert",
        files={"a.xyz": ("a.xyz", b"zzz")},
        headers=headers,
        timeout=30,
    )
    assert r.status_code == 400 and r.text.startswith("Invalid form data: no form file found")
    r = httpx.post(url, content=b"{}", headers={**headers, "Content-Type": "application/json"})
    assert r.status_code == 415


def test_a_corrupt_document_fails_with_a_400_naming_why(gotenberg, tmp_path):
    broken = tmp_path / "broken.docx"
    broken.write_bytes(b"PK\x03\x04 this is no document")
    with gotenberg.libre_office.to_pdf() as route, pytest.raises(HttpStatusError) as err:
        route.convert(broken).run()
    assert err.value.response.status_code == 400


def test_flatten_draws_the_form_into_its_page(gotenberg, tmp_path):
    filled = tmp_path / "filled.pdf"
    with pikepdf.open(FORM) as pdf:
        name = next(f for f in pdf.Root.AcroForm.Fields if str(f.T) == "Name")
        name.V = pikepdf.String("Ada Lovelace")
        pdf.Root.AcroForm.NeedAppearances = True
        pdf.save(filled)
    with gotenberg.flatten.flatten() as route:
        response = route.flatten(filled).run()
    with pikepdf.open(io.BytesIO(response.content)) as pdf:
        assert "/AcroForm" not in pdf.Root and "/Annots" not in pdf.pages[0]
    assert pdf_text(response.content).split()[:3] == ["Name", "Ada", "Lovelace"]


def test_embed_attaches_the_embeds_to_the_pdf(gotenberg, tmp_path):
    note = tmp_path / "note.txt"
    note.write_bytes(b"attached with the PDF\n")
    with gotenberg.embed.embed() as route:
        response = route.add_pdf(PDF).embed(note).run()
    with pikepdf.open(io.BytesIO(response.content)) as pdf:
        assert len(pdf.pages) == 3
        assert pdf.attachments["note.txt"].get_file().read_bytes() == note.read_bytes()


def test_pdf_a_1b_by_the_pdf_a_operation(gotenberg):
    with gotenberg.pdf_convert.to_pdfa() as route:
        call = route.convert(PDF).pdf_format(PdfAFormat.A1b)
        response = call.run()
    with pikepdf.open(io.BytesIO(response.content)) as pdf:
        assert pdf.open_metadata().pdfa_status == "1B" and len(pdf.pages) == 3


def test_encryption_by_the_pdf_encrypt_operation(gotenberg):
    with gotenberg.encrypt.encrypt() as route:
        call = route.add_file(PDF).user_password("open-me")
        response = call.run()
    with pytest.raises(pikepdf.PasswordError):
        pikepdf.open(io.BytesIO(response.content))
    with pikepdf.open(io.BytesIO(response.content), password="open-me") as pdf:
        assert len(pdf.pages) == 3


def test_metadata_write_by_its_operation(gotenberg):
    with gotenberg.metadata.write() as route:
        call = route.write(PDF).metadata(author="Ada", title="Notes")
        response = call.run()
    with pikepdf.open(io.BytesIO(response.content)) as pdf:
        assert (str(pdf.docinfo["/Author"]), str(pdf.docinfo["/Title"])) == ("Ada", "Notes")


def test_split_by_pages_by_pdf_extract_pages(gotenberg):
    with gotenberg.split.split() as route:
        call = route.split(PDF).split_mode("pages").split_span("2-3").split_unify(split_unify=True)
        response = call.run()
    assert pages(response.content) == 2


def test_the_job_is_the_user_s_own_with_its_tag(deployment, key, gotenberg):
    with gotenberg.merge.merge() as route:
        route.merge([PDF, PDF]).run()
    with deployment.client(key) as api:
        jobs = api.get("/v2/jobs", params={"filter[tag]": "gotenberg", "include": "tasks"})
    (job,) = jobs.json()["data"]
    assert job["status"] == "finished"
    ops = [t["operation"] for t in job["tasks"]]
    assert ops == ["import/upload", "import/upload", "merge", "export/url"]


def test_webhook_gets_the_file_and_the_error_url_the_failure(deployment, key, receiver, tmp_path):
    with GotenbergClient(deployment.url, auth=("u", key), timeout=60) as client:
        client.add_webhook_url(receiver.url)
        client.add_error_webhook_url(receiver.url.replace("/hook", "/error"))
        client.set_webhook_http_method("PUT")
        client.set_webhook_extra_headers({"X-Secret": "s3"})
        with client.merge.merge() as route:
            answer = route.merge([PDF, PDF]).trace_id("hook-1").run()
        assert answer.status_code == 204
        (got,) = receiver.wait_for(1, timeout=60)
        assert got.method == "PUT" and got.path == "/hook"
        assert pages(got.body) == 6 and got.headers["content-type"] == "application/pdf"
        assert got.headers["gotenberg-trace"] == "hook-1" and got.headers["x-secret"] == "s3"
        assert "attachment" in got.headers["content-disposition"]
        broken = tmp_path / "broken.pdf"
        broken.write_bytes(b"%PDF-1.4 not really")
        with client.merge.merge() as route:
            assert route.merge([broken, PDF]).run().status_code == 204
        error = receiver.wait_for(2, timeout=60)[1]
        with client.split.split() as route:  # several files: a zip, sent chunked
            assert route.split(PDF).split_mode("intervals").split_span("1").run().status_code == 204
        pages_zip = receiver.wait_for(3, timeout=60)[2]
    assert error.path == "/error" and error.method == "POST"
    body = json.loads(error.body)
    assert body["status"] == 400 and body["message"]
    assert pages_zip.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(pages_zip.body)) as archive:
        assert [pages(archive.read(n)) for n in archive.namelist()] == [1, 1, 1]


def merge_with(deployment, headers: dict[str, str], *files: Path) -> httpx.Response:
    return httpx.post(
        deployment.url + "/forms/pdfengines/merge",
        files=[("files", (f"{i}.pdf", f.read_bytes())) for i, f in enumerate(files)],
        headers=headers,
        timeout=30,
    )


def test_a_webhook_without_an_error_url_or_an_events_url_is_refused(deployment, key, receiver):
    headers = {"Authorization": f"Bearer {key}", "Gotenberg-Webhook-Url": receiver.url}
    r = merge_with(deployment, headers, PDF)
    assert r.status_code == 400
    assert "Gotenberg-Webhook-Error-Url" in r.text and "Gotenberg-Webhook-Events-Url" in r.text


def test_the_events_url_hears_of_each_delivery_and_of_a_failure_with_no_error_url(
    deployment, key, receiver, tmp_path
):
    events = receiver.url.replace("/hook", "/events")
    headers = {
        "Authorization": f"Bearer {key}",
        "Gotenberg-Webhook-Url": receiver.url,
        "Gotenberg-Webhook-Events-Url": events,
        "Gotenberg-Trace": "events-1",
    }
    assert merge_with(deployment, headers, PDF, PDF).status_code == 204
    delivered, event = receiver.wait_for(2, timeout=60)  # the file first, then its event
    assert (delivered.path, pages(delivered.body)) == ("/hook", 6)
    assert event.path == "/events" and event.headers["content-type"] == "application/json"
    body = json.loads(event.body)
    assert (body["event"], body["correlationId"]) == ("webhook.success", "events-1")
    assert body["timestamp"].endswith("Z") and "error" not in body
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4 not really")
    headers["Gotenberg-Trace"] = "events-2"
    assert merge_with(deployment, headers, broken, PDF).status_code == 204
    failed = receiver.wait_for(3, timeout=60)[2]  # no error URL: the event is all there is
    body = json.loads(failed.body)
    assert failed.path == "/events" and body["event"] == "webhook.error"
    assert body["correlationId"] == "events-2"
    assert body["error"]["status"] == 400 and body["error"]["message"]
    # ... and so it is retried as a delivery is: refused once, it comes again
    receiver.status = 503
    headers["Gotenberg-Trace"] = "events-3"
    assert merge_with(deployment, headers, broken, PDF).status_code == 204
    refused = receiver.wait_for(4, timeout=60)[3]
    receiver.status = 200
    again = receiver.wait_for(5, timeout=60)[4]
    assert (refused.path, again.path) == ("/events", "/events")
    first, second = json.loads(refused.body), json.loads(again.body)
    assert first.pop("timestamp") <= second.pop("timestamp")  # each attempt's own time
    assert first == second and second["correlationId"] == "events-3"


PAGE = "<html><body><h1>Hello, Gotenberg</h1><p>From the appliance.</p></body></html>"


@pytest.fixture
def page_server():
    """A page on loopback for the url routes (the local deployment allows private hosts)."""
    with serve(always(PAGE.encode(), Content_Type="text/html")) as origin:
        yield origin.url("/page.html")


def _page_size(data: bytes) -> tuple[float, float]:
    with pikepdf.open(io.BytesIO(data)) as pdf:
        box = pdf.pages[0].mediabox
        return float(box[2]) - float(box[0]), float(box[3]) - float(box[1])


def test_chromium_renders_html_on_letter_paper(gotenberg, tmp_path):
    index = tmp_path / "index.html"
    index.write_text(PAGE)
    with gotenberg.chromium.html_to_pdf() as route:
        call = route.index(index)
        response = call.run()
    assert _page_size(response.content) == pytest.approx((612, 792), abs=1)  # Gotenberg's Letter
    assert "Hello, Gotenberg" in pdf_text(response.content)


def test_chromium_screenshots_a_page_800_wide(gotenberg, tmp_path):
    index = tmp_path / "index.html"
    index.write_text(PAGE)
    with gotenberg.chromium.screenshot_html() as route:
        call = route.index(index)
        response = call.run()
    shot = pyvips.Image.new_from_buffer(response.content, "")
    assert (shot.get("vips-loader"), shot.width) == ("pngload_buffer", 800)


def test_chromium_captures_a_url_by_capture_website(gotenberg, page_server):
    with gotenberg.chromium.url_to_pdf() as route:
        call = route.url(page_server)
        response = call.run()
    assert pages(response.content) == 1 and "From the appliance." in pdf_text(response.content)
