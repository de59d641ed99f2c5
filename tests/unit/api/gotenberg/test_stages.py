"""Gotenberg 9's mapping: /forms/pdf/* routes and ``stages`` (on pipe and after conversions)
become the operations in the order written; Gotenberg 8's fields on a Gotenberg 9 request
answer Gotenberg 9's 400; ops and options nothing here gives answer 501 naming them."""

from __future__ import annotations

import json

import pytest

from appliance.api.gotenberg.fields import Capabilities, Form, GotenbergError, NotAvailable, Upload
from appliance.api.gotenberg.stages import parse_stages
from appliance.api.gotenberg.v9 import ROUTES, metadata_v9

CAPS = Capabilities(
    operations=frozenset(
        {"import/upload", "convert", "merge", "pdf/split-pages", "pdf/extract-pages",
         "pdf/rotate-pages", "pdf/a", "pdf/encrypt", "pdf/decrypt", "pdf/flatten", "metadata",
         "metadata/write", "watermark", "optimize", "capture-website", "export/url"}
    ),
    engines=frozenset({"libreoffice", "chromium"}),
    office_sources=frozenset({"docx", "odt"}),
)  # fmt: skip


def form(*names: str, **values: str) -> Form:
    return Form(dict(values), [Upload(n, "files") for n in names])


EMBEDS = Capabilities(CAPS.operations | {"pdf/embed"}, CAPS.engines, CAPS.office_sources)


def pipe(*stages: dict, files: tuple[str, ...] = ("a.pdf",), caps: Capabilities = CAPS) -> dict:
    return ROUTES["pdf/pipe"](form(*files, stages=json.dumps(stages)), caps).tasks


def steps(tasks: dict) -> list[tuple[str, str]]:
    return [(n, t["operation"]) for n, t in tasks.items()
            if t["operation"] not in ("import/upload", "export/url")]  # fmt: skip


def test_pipe_runs_the_stages_in_the_order_written_each_on_the_one_before():
    tasks = pipe(
        {"op": "merge"},
        {"op": "stamp-text", "text": "DRAFT", "x": 72, "y": 36, "fontSize": 24},
        {"op": "rotate", "angle": -90, "pages": "1"},
        files=("b.pdf", "a.pdf"),
    )
    assert steps(tasks) == [
        ("stage-1", "merge"), ("stage-2", "watermark"), ("stage-3", "pdf/rotate-pages")
    ]  # fmt: skip
    assert tasks["stage-1"]["input"] == ["file-0", "file-1"]
    assert tasks["file-0"]["filename"] == "a.pdf"  # Gotenberg's order: by name
    assert tasks["stage-2"]["input"] == ["stage-1"] and tasks["stage-3"]["input"] == ["stage-2"]
    assert tasks["export"]["input"] == ["stage-3"]


def test_stamp_text_is_anchored_at_x_y_from_the_bottom_left_in_points():
    stamp = pipe({"op": "stamp-text", "text": "DRAFT", "x": 72.4, "y": 36, "opacity": 0.5,
                  "font": "Times-Bold", "color": "#ff0000", "pages": "1-2"})["stage-1"]  # fmt: skip
    assert stamp == {
        "operation": "watermark", "input": ["file-0"], "text": "DRAFT",
        "font_name": "Times New Roman Bold", "font_size": 12, "font_color": "#ff0000",
        "position_horizontal": "left", "position_vertical": "bottom", "margin_horizontal": 72,
        "margin_vertical": 36, "opacity": 50, "layer": "above", "pages": "1-2",
    }  # fmt: skip


def test_rotate_sets_the_angle_as_gotenberg_9_does_not_adds_it():
    rotate = pipe({"op": "rotate", "angle": -90})["stage-1"]
    assert rotate["rotation"] == 270 and rotate["absolute"] is True and "pages" not in rotate
    with pytest.raises(GotenbergError, match="multiple of 90"):
        pipe({"op": "rotate", "angle": 45})


def test_split_every_page_and_one_range_and_select_keeps_the_order_listed():
    assert steps(pipe({"op": "split", "every": 1})) == [("stage-1", "pdf/split-pages")]
    tasks = pipe({"op": "split", "ranges": ["2-3"]}, {"op": "select", "pages": "2,1"})
    assert tasks["stage-1"]["pages"] == "2-3" and tasks["stage-2"]["pages"] == "2,1"
    with pytest.raises(NotAvailable, match="several ranges"):
        pipe({"op": "split", "ranges": ["1", "2-3"]})
    with pytest.raises(NotAvailable, match="more than one page"):
        pipe({"op": "split", "every": 2})
    with pytest.raises(NotAvailable, match="'odd'"):
        pipe({"op": "select", "pages": "odd"})


def test_stamp_image_imports_the_named_file_and_keeps_it_out_of_the_inputs():
    tasks = pipe(
        {"op": "stamp-image", "image": "logo.png", "width": 100}, files=("a.pdf", "logo.png")
    )
    assert tasks["file-1"] == {"operation": "import/upload", "filename": "logo.png"}
    stamp = tasks["stage-1"]
    assert stamp["input"] == ["file-0"] and stamp["image"] == "file-1"
    assert stamp["image_width"] == 100
    with pytest.raises(GotenbergError, match=r"no uploaded file is named 'nope\.png'"):
        pipe({"op": "stamp-image", "image": "nope.png"})


def test_encrypt_decrypt_metadata_optimize_flatten_and_remediate_map_to_their_operations():
    tasks = pipe(
        {"op": "decrypt", "password": "old"},
        {"op": "set-metadata", "title": "Report", "creationDate": "D:20260101120000Z"},
        {"op": "flatten-form"},
        {"op": "remediate", "profile": "PDF/A-3b"},
        {"op": "optimize", "dedup": False},
        {"op": "encrypt", "userPassword": "u", "permissions": {"print": False, "fillForms": False}},
    )
    assert [op for _, op in steps(tasks)] == [
        "pdf/decrypt", "metadata/write", "pdf/flatten", "pdf/a", "optimize", "pdf/encrypt"
    ]  # fmt: skip
    assert tasks["stage-1"]["password"] == "old"
    assert tasks["stage-2"]["metadata"] == {"Title": "Report", "CreationDate": "D:20260101120000Z"}
    assert tasks["stage-4"]["conformance_level"] == "3b"
    assert tasks["stage-5"]["profile"] == "archive"  # lossless, as Gotenberg 9's optimize
    assert tasks["stage-6"] == {
        "operation": "pdf/encrypt", "input": ["stage-5"], "set_password": "u",
        "allow_print": False, "allow_annotate": False,
    }  # fmt: skip


ROLLED_BACK = "Gotenberg-Remediation-Rolled-Back"


def test_remediate_reports_no_fix_rolled_back_and_no_residual_it_cannot_count():
    """Gotenberg 9 reports on remediate's answer the fixes it undid (pdf/a undoes none) and
    the violations its own check still finds (pdf/a does not check: not sent)."""
    remediate = {"op": "remediate", "profile": "PDF/A-2b"}
    piped = ROUTES["pdf/pipe"](form("a.pdf", stages=json.dumps([remediate])), CAPS)
    alone = ROUTES["pdf/remediate"](form("a.pdf", profile="PDF/A-2b"), CAPS)
    converted = ROUTES["libreoffice/convert"](
        form("a.docx", stages=json.dumps([{"op": "merge"}, remediate])), CAPS
    )
    for plan in (piped, alone, converted):
        assert plan.headers == {ROLLED_BACK: "0"}


def test_only_remediate_reports_and_gotenberg_8_s_pdfa_does_not():
    assert ROUTES["pdf/pipe"](form("a.pdf", stages='[{"op":"merge"}]'), CAPS).headers == {}
    assert ROUTES["pdfengines/convert"](form("a.pdf", pdfa="PDF/A-2b"), CAPS).headers == {}


@pytest.mark.parametrize(
    ("stage", "named"),
    [
        ({"op": "sign", "certificate": "c.pem"}, "'sign' stage"),
        ({"op": "redact"}, "'redact' stage"),
        ({"op": "remediate", "profile": "PDF/UA-1"}, "remediating to PDF/UA-1"),
        ({"op": "remediate", "profile": ["PDF/A-2b", "PDF/UA-1"]}, "PDF/A-2b and PDF/UA-1"),
        ({"op": "remediate", "profile": "PDF/A-2b", "language": "de-DE"}, "'language'"),
        ({"op": "encrypt", "userPassword": "u", "algorithm": "rc4-40"}, "rc4-40"),
        ({"op": "stamp-text", "text": "Привет"}, "Western European"),
        ({"op": "stamp-text", "text": "DRAFT", "rotation": 45}, "'rotation'"),
        ({"op": "stamp-text", "text": "DRAFT", "font": "ZapfDingbats"}, "ZapfDingbats"),
    ],
)
def test_what_nothing_here_does_answers_501_naming_it(stage, named):
    with pytest.raises(NotAvailable, match=named) as err:
        pipe(stage)
    assert err.value.status == 501


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("not json", "form field 'stages' is invalid (Expecting value"),
        ("[]", "want a non-empty JSON list"),
        ('{"op": "merge"}', "want a non-empty JSON list"),
        ('[{"angle": 90}]', "stage 1 has no 'op'"),
        ('[{"op": "merge"}, {"op": "shred"}]', "stage 2: unknown op 'shred'"),
        (
            '[{"op": "rotate", "angle": 90, "degrees": 1}]',
            "stage 1 ('rotate') has no field 'degrees'",
        ),
    ],
)
def test_malformed_stages_answer_400_before_anything_runs(raw, message):
    with pytest.raises(GotenbergError) as err:
        parse_stages(raw)
    assert err.value.status == 400 and message in err.value.message
    assert err.value.message.startswith("Invalid form data: ")


def test_a_stage_field_of_the_wrong_type_is_a_400_naming_the_stage():
    with pytest.raises(GotenbergError, match=r"stage 1 \('rotate'\) field 'angle' is invalid"):
        pipe({"op": "rotate", "angle": "left"})
    with pytest.raises(GotenbergError, match=r"stage 1 \('stamp-text'\) field 'text' is required"):
        pipe({"op": "stamp-text"})


def test_each_stage_has_its_route_whose_form_fields_are_the_stage_s():
    tasks = ROUTES["pdf/rotate"](form("a.pdf", angle="90", pages="2"), CAPS).tasks
    assert tasks["rotate"]["rotation"] == 90 and tasks["rotate"]["pages"] == "2"
    encrypt = form("a.pdf", userPassword="u", permissions='{"extractText": false}')
    tasks = ROUTES["pdf/encrypt"](encrypt, CAPS).tasks
    assert tasks["encrypt"]["allow_copy"] is False
    tasks = ROUTES["pdf/split"](form("a.pdf", ranges='["1-2"]'), CAPS).tasks
    assert tasks["split"]["pages"] == "1-2"
    with pytest.raises(NotAvailable, match="'sign' stage"):
        ROUTES["pdf/sign"](form("a.pdf"), CAPS)
    with pytest.raises(NotAvailable, match="/forms/pdf/info"):
        ROUTES["pdf/info"](form("a.pdf"), CAPS)


def test_metadata_reads_as_json_under_gotenberg_9_s_names_opened_with_the_password():
    plan = ROUTES["pdf/metadata"](form("a.pdf", password="s"), CAPS)
    assert plan.json and [t["operation"] for t in plan.tasks.values()][1:] == [
        "pdf/decrypt", "metadata"
    ]  # fmt: skip
    assert plan.per_file is not None
    found = {"PageCount": 3, "Title": "T", "Author": "A", "CreateDate": "D:2026"}
    assert metadata_v9(found) == {"title": "T", "author": "A", "creationDate": "D:2026"}


@pytest.mark.parametrize(
    ("route", "values", "message"),
    [
        ("pdf/merge", {"pdfa": "PDF/A-2b"},
         """form field 'pdfa' is unknown to this route; Gotenberg 9 moved it to a stage: add"""
         """ {"op":"remediate","profile":"PDF/A-2b"} to 'stages'"""),
        ("pdf/pipe", {"stages": '[{"op":"merge"}]', "rotateAngle": "90"},
         """Gotenberg 9 moved it to a stage: add {"op":"rotate"} to 'stages'"""),
        ("chromium/convert/url", {"url": "https://e.test", "stages": '[{"op":"optimize"}]',
                                  "generateDocumentOutline": "true"},
         "form field 'generateDocumentOutline' is unknown to this route; Gotenberg 9 renamed it"
         " 'nativeBookmarks'"),
        ("libreoffice/convert", {"stages": '[{"op":"optimize"}]', "merge": "true"},
         """moved it to a stage: add {"op":"merge"} to 'stages'"""),
        ("libreoffice/convert", {"stages": '[{"op":"optimize"}]', "pdfa": "PDF/A-2b"},
         "Gotenberg 9 renamed it 'nativePdfa'"),
    ],
)  # fmt: skip
def test_gotenberg_8_fields_on_gotenberg_9_requests_say_where_they_went(route, values, message):
    with pytest.raises(GotenbergError) as err:
        ROUTES[route](form("a.pdf", "a.docx", **values), CAPS)
    assert err.value.status == 400 and message in err.value.message


def test_conversions_run_stages_on_their_pdfs_instead_of_gotenberg_8_s_fields():
    stages = '[{"op":"merge"},{"op":"stamp-text","text":"DRAFT"}]'
    plan = ROUTES["libreoffice/convert"](form("b.docx", "a.odt", stages=stages, nativePages="1"),
                                         CAPS)  # fmt: skip
    assert steps(plan.tasks) == [
        ("convert", "convert"), ("stage-1", "merge"), ("stage-2", "watermark")
    ]  # fmt: skip
    assert plan.tasks["convert"]["pages"] == "1" and plan.last == "stage-2"
    html = Form({"stages": '[{"op":"optimize"}]'}, [Upload("index.html", "files")])
    assert steps(ROUTES["chromium/convert/html"](html, CAPS).tasks) == [
        ("convert", "convert"), ("stage-1", "optimize")
    ]  # fmt: skip
    with pytest.raises(GotenbergError, match="'stages' is unknown to this route"):
        ROUTES["chromium/screenshot/html"](html, CAPS)


def test_native_names_are_read_beside_gotenberg_8_s_with_or_without_stages():
    plan = ROUTES["libreoffice/convert"](form("a.docx", nativePdfa="PDF/A-2b"), CAPS)
    assert plan.tasks["convert"]["pdf_a"] is True
    plan = ROUTES["libreoffice/convert"](
        form("a.docx", nativePdfa="PDF/A-1b", stages='[{"op":"optimize"}]'), CAPS
    )
    assert steps(plan.tasks) == [("convert", "convert"), ("pdfa", "pdf/a"), ("stage-1", "optimize")]
    plan = ROUTES["chromium/convert/url"](form(url="https://e.test", nativePages="2-3"), CAPS)
    assert plan.tasks["capture"]["pages"] == "2-3"
    with pytest.raises(NotAvailable, match="generateTaggedPdf"):
        ROUTES["chromium/convert/url"](form(url="https://e.test", nativeTaggedPdf="true"), CAPS)
    with pytest.raises(GotenbergError, match="'nativePages' and 'nativePageRanges' differ"):
        ROUTES["libreoffice/convert"](form("a.docx", nativePages="1", nativePageRanges="2"), CAPS)


def test_gotenberg_8_paths_keep_gotenberg_8_s_meaning():
    plan = ROUTES["pdfengines/merge"](form("a.pdf", "b.pdf", rotateAngle="90"), CAPS)
    assert [op for _, op in steps(plan.tasks)] == ["merge", "pdf/rotate-pages"]
    assert "absolute" not in plan.tasks["rotate"]  # v8 turns pages by the angle
    plan = ROUTES["libreoffice/convert"](form("a.docx", "b.docx", merge="true"), CAPS)
    assert [op for _, op in steps(plan.tasks)] == ["convert", "merge"]


def test_files_the_stages_name_are_not_inputs_of_the_conversion():
    stages = '[{"op":"stamp-image","image":"logo.png"}]'
    html = Form({"stages": stages}, [Upload("index.html", "files"), Upload("logo.png", "files")])
    tasks = ROUTES["chromium/convert/html"](html, CAPS).tasks
    assert tasks["convert"]["input"] == ["file-0"] and tasks["stage-1"]["image"] == "file-1"
    assert tasks["file-1"]["filename"] == "logo.png"


def test_a_stage_s_own_route_takes_no_stages():
    with pytest.raises(GotenbergError, match="/forms/pdf/pipe runs them"):
        ROUTES["pdf/merge"](form("a.pdf", stages='[{"op":"optimize"}]'), CAPS)


def test_attach_embeds_the_named_file_under_its_name_by_pdf_embed():
    tasks = pipe({"op": "attach", "file": "data.pdf"}, files=("a.pdf", "data.pdf"), caps=EMBEDS)
    assert tasks["stage-1"]["input"] == ["file-0"]  # the attachment is no input, PDF or not
    assert tasks["stage-1"]["attachments"] == ["file-1"]
    assert tasks["file-1"]["filename"] == "data.pdf"
    with pytest.raises(NotAvailable, match="'relationship'"):
        pipe({"op": "attach", "file": "data.pdf", "relationship": "Data"},
             files=("a.pdf", "data.pdf"), caps=EMBEDS)  # fmt: skip
    with pytest.raises(NotAvailable, match="pdf/embed"):
        pipe({"op": "attach", "file": "data.pdf"}, files=("a.pdf", "data.pdf"))


def refused(route: str, the_form: Form) -> str:
    with pytest.raises(GotenbergError) as caught:
        ROUTES[route](the_form, CAPS)
    assert caught.value.status == 400
    return caught.value.message


@pytest.mark.parametrize(
    ("route", "fields", "message"),
    [
        ("chromium/convert/html", {"landscape": "maybe"},
         "form field 'landscape' is invalid (got 'maybe', want a boolean)"),
        ("chromium/convert/html", {"scale": "big"},
         "form field 'scale' is invalid (got 'big', want a number)"),
        ("chromium/convert/html", {"paperWidth": "wide"},
         "form field 'paperWidth' is invalid (got 'wide', want a length such as 8.5, 8.5in,"
         " 210mm or 72pt)"),
        ("chromium/convert/html", {"waitDelay": "soon"},
         "form field 'waitDelay' is invalid (got 'soon', want a duration such as 500ms or 2s)"),
        ("chromium/convert/html", {"emulatedMediaType": "tv"},
         "form field 'emulatedMediaType' is invalid (got 'tv', want screen or print)"),
        ("libreoffice/convert", {"nativePages": "1-x"},
         "form field 'nativePages' is invalid (got '1-x', want pages such as 1-3,5)"),
    ],
)  # fmt: skip
def test_a_gotenberg_9_request_s_bad_value_is_refused_in_gotenberg_9_s_words(
    route, fields, message
):
    """Gotenberg 9's shape (its docs' errors page): "Invalid form data: form field
    'paperSize' is invalid (got 'A9', want A3, A4, ... or Tabloid)", naming the field sent."""
    files = ("index.html",) if route.startswith("chromium") else ("a.docx",)
    stages = json.dumps([{"op": "flatten-form"}])
    assert refused(route, form(*files, stages=stages, **fields)) == f"Invalid form data: {message}"


def test_without_stages_the_same_values_keep_gotenberg_8_s_words_naming_the_field_sent():
    office = refused("libreoffice/convert", form("a.docx", nativePages="1-x"))
    assert office == "Invalid form data: form field 'nativePages' is invalid (got '1-x')"
    page = refused("chromium/convert/html", form("index.html", landscape="maybe"))
    assert page.endswith("(got 'maybe', expected a boolean)")


def test_a_stage_s_bad_string_is_shown_in_single_quotes_as_gotenberg_9_shows_it():
    in_stage = refused("pdf/pipe", form("a.pdf", stages='[{"op":"rotate","angle":"ninety"}]'))
    assert in_stage == ("Invalid form data: stage 1 ('rotate') field 'angle' is invalid"
                        " (got 'ninety', want a number)")  # fmt: skip
    in_form = refused("pdf/rotate", form("a.pdf", angle="ninety"))
    assert (
        in_form == "Invalid form data: form field 'angle' is invalid (got 'ninety', want a number)"
    )
    typed = refused("pdf/pipe", form("a.pdf", stages='[{"op":"stamp-text","text":5}]'))
    assert typed.endswith("field 'text' is invalid (got 5, want a string)")
