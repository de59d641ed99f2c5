"""The Gotenberg field mapping: forms become the tasks Gotenberg's steps correspond to, in its
order; what is not enabled, and fields nothing here can honour, are refused by name."""

from __future__ import annotations

import functools

import pytest

from appliance.api.gotenberg.fields import (
    ROUTES,
    Capabilities,
    Form,
    GotenbergError,
    NotAvailable,
    Upload,
    alphanumeric,
)

TODAY = Capabilities(
    operations=frozenset(
        {"import/upload", "convert", "merge", "pdf/split-pages", "pdf/rotate-pages", "metadata",
         "export/url"}
    ),
    engines=frozenset({"libreoffice", "pdfium"}),
    office_sources=frozenset({"docx", "odt", "xlsx", "html"}),
)  # fmt: skip
LATER = Capabilities(
    operations=TODAY.operations
    | {"pdf/a", "pdf/encrypt", "pdf/extract-pages", "metadata/write", "capture-website"}
    | {"pdf/embed"},
    engines=TODAY.engines | {"chromium"},
    office_sources=TODAY.office_sources,
)


def form(*names: str, **values: str) -> Form:
    return Form(dict(values), [Upload(n, n) for n in names])


def ops(route: str, f: Form, caps: Capabilities = TODAY) -> list[str]:
    plan = ROUTES[route](f, caps)
    return [t["operation"] for t in plan.tasks.values()]


def test_libreoffice_convert_is_one_convert_pinned_to_libreoffice_then_an_export():
    plan = ROUTES["libreoffice/convert"](form("b.docx", "a.odt", "x.zip"), TODAY)
    assert [u.name for _, u in plan.uploads] == ["a.odt", "b.docx"]  # zip: not LibreOffice's
    convert = plan.tasks["convert"]
    assert convert == {
        "operation": "convert",
        "input": ["file-0", "file-1"],
        "output_format": "pdf",
        "engine": "libreoffice",
    }
    assert plan.last == "convert" and plan.tasks["export"]["input"] == ["convert"]


def test_libreoffice_merge_split_and_page_ranges_follow_gotenberg_s_order():
    f = form("a.docx", "b.docx", merge="true", nativePageRanges="1-2", splitMode="intervals",
             splitSpan="1")  # fmt: skip
    plan = ROUTES["libreoffice/convert"](f, TODAY)
    assert [t["operation"] for t in plan.tasks.values()][2:] == [
        "convert", "merge", "pdf/split-pages", "export/url"
    ]  # fmt: skip
    assert plan.tasks["convert"]["pages"] == "1-2" and plan.last == "split"


def test_pdf_a_2b_is_libreoffice_s_own_and_other_levels_need_pdf_a():
    plan = ROUTES["libreoffice/convert"](form("a.docx", pdfa="PDF/A-2b"), TODAY)
    assert plan.tasks["convert"]["pdf_a"] is True and "pdfa" not in plan.tasks
    with pytest.raises(NotAvailable, match="pdf/a"):
        ROUTES["libreoffice/convert"](form("a.docx", pdfa="PDF/A-1b"), TODAY)
    plan = ROUTES["libreoffice/convert"](form("a.docx", pdfa="PDF/A-1b"), LATER)
    assert plan.tasks["pdfa"]["conformance_level"] == "1b"


def test_v7_names_are_read_beside_v8_s():
    plan = ROUTES["libreoffice/convert"](form("a.docx", pdfFormat="PDF/A-2b"), TODAY)
    assert plan.tasks["convert"]["pdf_a"] is True
    plan = ROUTES["pdfengines/convert"](form("a.pdf", nativePdfFormat="PDF/A-3b"), LATER)
    assert plan.tasks["pdfa"]["conformance_level"] == "3b"
    plan = ROUTES["chromium/convert/url"](form(url="https://e.test", userAgent="bot/1"), LATER)
    assert plan.tasks["capture"]["headers"] == {"User-Agent": "bot/1"}


def test_post_steps_run_in_gotenberg_s_order_once_their_operations_exist():
    f = form("a.pdf", "b.pdf", rotateAngle="90", pdfa="PDF/A-3b", metadata='{"Author": "me"}',
             ownerPassword="o")  # fmt: skip
    assert ops("pdfengines/merge", f, LATER)[2:] == [
        "merge", "pdf/rotate-pages", "pdf/a", "metadata/write", "pdf/encrypt", "export/url"
    ]  # fmt: skip
    plan = ROUTES["pdfengines/merge"](f, LATER)
    assert plan.tasks["encrypt"] == {
        "operation": "pdf/encrypt", "input": ["metadata"], "set_owner_password": "o"
    }  # fmt: skip


def test_pdf_a_with_a_user_password_is_refused_as_gotenberg_refuses_it():
    f = form("a.pdf", pdfa="PDF/A-2b", userPassword="u")
    with pytest.raises(GotenbergError, match="incompatible with encryption"):
        ROUTES["pdfengines/merge"](f, LATER)


def test_split_pages_mode_extracts_and_splits_unless_unified():
    f = form("a.pdf", splitMode="pages", splitSpan="1-3")
    assert ops("pdfengines/split", f, LATER)[1:] == [
        "pdf/extract-pages", "pdf/split-pages", "export/url"
    ]  # fmt: skip
    f.values["splitUnify"] = "true"
    assert ops("pdfengines/split", f, LATER)[1:] == ["pdf/extract-pages", "export/url"]
    with pytest.raises(NotAvailable, match="more than one page"):
        ROUTES["pdfengines/split"](form("a.pdf", splitMode="intervals", splitSpan="2"), TODAY)


@pytest.mark.parametrize(
    ("route", "values", "message"),
    [
        ("pdfengines/split", {}, "form field 'splitMode' is required"),
        ("pdfengines/split", {"splitMode": "x", "splitSpan": "1"}, "wrong value"),
        ("pdfengines/convert", {}, "either 'pdfa' or 'pdfua'"),
        ("pdfengines/encrypt", {}, "'userPassword' or 'ownerPassword' is required"),
        ("pdfengines/metadata/write", {}, "form field 'metadata' is required"),
        ("pdfengines/metadata/write", {"metadata": "{"}, "form field 'metadata' is invalid"),
        ("pdfengines/merge", {"flatten": "maybe"}, "form field 'flatten' is invalid"),
        ("pdfengines/merge", {"pdfa": "PDF/X"}, "The PDF format 'PDF/X' is not supported"),
    ],
)
def test_bad_fields_are_400_with_gotenberg_s_messages(route, values, message):
    with pytest.raises(GotenbergError, match=message) as err:
        ROUTES[route](form("a.pdf", **values), LATER)
    assert err.value.status == 400


def test_metadata_read_exports_nothing_its_answer_is_the_task_s_result():
    plan = ROUTES["pdfengines/metadata/read"](form("a.pdf", "b.pdf"), TODAY)
    assert ops("pdfengines/metadata/read", form("a.pdf"))[1:] == ["metadata"]
    assert plan.json and plan.last == "metadata"


def test_a_route_needs_its_files_by_extension():
    with pytest.raises(GotenbergError) as err:
        ROUTES["pdfengines/merge"](form("a.docx"), TODAY)
    assert err.value.message == "Invalid form data: no form file found for extensions: [.pdf]"


@pytest.mark.parametrize("field", ["landscape", "generateDocumentOutline", "pdfua"])
def test_fields_nothing_here_honours_are_refused_not_ignored(field):
    with pytest.raises(NotAvailable, match=field):
        ROUTES["libreoffice/convert"](form("a.docx", **{field: "true"}), LATER)


def test_embedded_files_are_attached_after_the_merge_and_before_encryption():
    f = Form(
        {"userPassword": "pw"},
        [Upload("b.pdf", "files"), Upload("x.xml", "embeds"), Upload("a.pdf", "files")],
    )
    plan = ROUTES["pdfengines/merge"](f, LATER)
    embed = plan.tasks["embed"]
    assert embed["operation"] == "pdf/embed" and embed["input"] == ["merge"]
    (attached,) = embed["attachments"]
    assert plan.tasks[attached] == {"operation": "import/upload", "filename": "x.xml"}
    assert plan.tasks["merge"]["input"] == ["file-0", "file-1"]  # the PDFs only
    assert plan.tasks["encrypt"]["input"] == ["embed"]


def test_the_embed_route_needs_files_to_embed_and_other_file_fields_are_refused():
    with pytest.raises(GotenbergError, match="'embeds'") as info:
        ROUTES["pdfengines/embed"](Form({}, [Upload("a.pdf", "files")]), LATER)
    assert info.value.status == 400
    f = Form({}, [Upload("a.pdf", "files"), Upload("s.png", "stamp")])
    with pytest.raises(NotAvailable, match="stamp"):
        ROUTES["pdfengines/merge"](f, LATER)


def test_chromium_page_fields_become_capture_website_options_in_cm_mm_and_ms():
    f = form(url="https://e.test", paperWidth="8.5", paperHeight="297mm", marginTop="1cm",
             landscape="true", printBackground="true", scale="1.5", waitDelay="2s",
             emulatedMediaType="screen", nativePageRanges="1-2")  # fmt: skip
    capture = ROUTES["chromium/convert/url"](f, LATER).tasks["capture"]
    assert capture == {
        "operation": "capture-website",
        "url": "https://e.test",
        "output_format": "pdf",
        "page_width": 21.59,
        "page_height": 29.7,
        "margin_top": 10.0,
        "page_orientation": "landscape",
        "print_background": True,
        "zoom": 1.5,
        "pages": "1-2",
        "wait_time": 2000,
        "css_media_type": "screen",
    }


def test_screenshots_take_their_format_and_size():
    f = form(url="https://e.test", format="jpeg", width="640", height="480", quality="70")
    capture = ROUTES["chromium/screenshot/url"](f, LATER).tasks["capture"]
    assert (capture["output_format"], capture["screenshot_width"], capture["quality"]) == (
        "jpg", 640, 70
    )  # fmt: skip
    assert "screenshot_height" not in capture  # no clip: the whole page
    f.values["clip"] = "true"
    assert ROUTES["chromium/screenshot/url"](f, LATER).tasks["capture"]["screenshot_height"] == 480
    plain = ROUTES["chromium/screenshot/url"](form(url="https://e.test"), LATER).tasks["capture"]
    assert (plain["output_format"], plain["screenshot_width"]) == ("png", 800)


def test_chromium_defaults_are_gotenberg_s_letter_paper_without_backgrounds():
    capture = ROUTES["chromium/convert/url"](form(url="https://e.test"), LATER).tasks["capture"]
    assert (capture["page_width"], capture["page_height"]) == (21.59, 27.94)
    assert capture["print_background"] is False and "wait_until" not in capture
    f = form(url="https://e.test", skipNetworkIdleEvent="false", waitForExpression="ok()",
             omitBackground="true", preferCssPageSize="true")  # fmt: skip
    capture = ROUTES["chromium/convert/url"](f, LATER).tasks["capture"]
    assert capture["wait_until"] == "networkidle0" and capture["wait_for_expression"] == "ok()"
    assert capture["omit_background"] is True and capture["prefer_css_page_size"] is True


def test_encrypt_permissions_map_onto_pdf_encrypt_s():
    f = form("a.pdf", userPassword="u", allowPrinting="false", allowFillingForms="false")
    encrypt = ROUTES["pdfengines/encrypt"](f, LATER).tasks["encrypt"]
    assert encrypt["allow_print"] is False and encrypt["allow_annotate"] is False
    assert "allow_copy" not in encrypt and encrypt["set_password"] == "u"
    with pytest.raises(GotenbergError, match="require a 'userPassword'"):
        ROUTES["pdfengines/merge"](form("a.pdf", allowCopying="false"), LATER)


def test_html_is_rendered_by_the_chromium_engine_with_its_header_and_footer():
    f = Form({}, [Upload("index.html", "files"), Upload("footer.html", "files")])
    f.texts["footer.html"] = "<p>page</p>"
    plan = ROUTES["chromium/convert/html"](f, LATER)
    convert = plan.tasks["convert"]
    assert convert["engine"] == "chromium" and convert["footer_template"] == "<p>page</p>"
    assert convert["display_header_footer"] is True
    assert [u.name for _, u in plan.uploads] == ["index.html"]
    f.files.append(Upload("logo.png", "files"))
    with pytest.raises(NotAvailable, match=r"logo\.png"):
        ROUTES["chromium/convert/html"](f, LATER)


def test_url_capture_needs_capture_website():
    with pytest.raises(NotAvailable, match="capture-website"):
        ROUTES["chromium/convert/url"](form(url="https://e.test"), TODAY)


def test_files_sort_as_gotenberg_sorts_them():
    names = ["b.pdf", "10_x.pdf", "2_y.pdf", "page10.pdf", "page2.pdf", "a.pdf"]
    ordered = sorted(names, key=functools.cmp_to_key(alphanumeric))
    assert ordered == ["2_y.pdf", "10_x.pdf", "page2.pdf", "page10.pdf", "a.pdf", "b.pdf"]
