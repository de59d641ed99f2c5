"""The job graph's checks of the PDF tasks (pdf/extract-pages, pdf/a, pdf/ocr, pdf/encrypt,
pdf/decrypt, pdf/flatten, pdf/embed, metadata/write, watermark): bad fields are 422s naming
the field, good ones are planned on the right queue with their references linked."""

import pytest

from appliance.conversions import graph
from appliance.conversions.operations.enabled import OPERATIONS
from appliance.engines.enabled import enabled_engines
from appliance.engines.registry import Registry
from appliance.errors import InvalidData

REGISTRY = Registry(enabled_engines())
PDF = {"operation": "import/url", "url": "https://example.test/in.pdf"}
PNG = {"operation": "import/url", "url": "https://example.test/logo.png"}


def plan(**task):
    return graph.plan({"in": PDF, "logo": PNG, "t": task}, REGISTRY, lambda ref: None)


def errors_of(**task):
    with pytest.raises(InvalidData) as info:
        plan(**task)
    return info.value.errors


@pytest.mark.parametrize(
    ("operation", "fields"),
    [
        ("pdf/extract-pages", {"pages": "1-2,4"}),
        ("pdf/a", {"conformance_level": "1b"}),
        ("pdf/ocr", {"language": ["eng"], "auto_orient": True}),
        ("pdf/encrypt", {"set_password": "x", "allow_print": False}),
        ("pdf/decrypt", {"password": "x"}),
        ("pdf/flatten", {}),
        ("pdf/embed", {"attachments": "logo"}),
        ("pdf/embed", {"attachments": ["logo"]}),
        ("metadata/write", {"metadata": {"Title": "T", "author": "A", "Subject": None}}),
        ("watermark", {"text": "DRAFT", "opacity": 50, "position_vertical": "top"}),
    ],
)
def test_each_pdf_task_with_good_fields_is_planned_to_make_a_pdf(operation, fields):
    task = plan(operation=operation, input="in", **fields)[-1]
    assert task.output_format == "pdf"
    assert task.queue == ("office" if operation == "pdf/ocr" else "light")


@pytest.mark.parametrize(
    "operation",
    [
        "pdf/extract-pages",
        "pdf/a",
        "pdf/ocr",
        "pdf/encrypt",
        "pdf/decrypt",
        "pdf/flatten",
        "metadata/write",
    ],
)
def test_each_pdf_task_refuses_an_input_that_is_no_pdf(operation):
    fields = {"pages": "1", "set_password": "x", "metadata": {"Title": "x"}}
    schema = OPERATIONS[operation].options_schema(REGISTRY).__struct_fields__
    errors = errors_of(
        operation=operation, input="logo", **{k: v for k, v in fields.items() if k in schema}
    )
    assert errors["tasks.t.input"] == [f"{operation} takes pdf, not png"]


@pytest.mark.parametrize(
    ("operation", "fields", "field"),
    [
        ("pdf/extract-pages", {}, "tasks.t.pages"),
        ("pdf/extract-pages", {"pages": "first"}, "tasks.t.pages"),
        ("pdf/a", {"conformance_level": "1a"}, "tasks.t.conformance_level"),
        ("pdf/ocr", {"language": "en glish"}, "tasks.t.language"),
        ("pdf/ocr", {"language": ["eng", "xxx"]}, "tasks.t.language"),
        ("pdf/ocr", {"language": []}, "tasks.t.language"),
        ("pdf/ocr", {"auto_orient": "yes"}, "tasks.t.auto_orient"),
        ("pdf/encrypt", {}, "tasks.t.set_password"),
        ("pdf/encrypt", {"set_password": ""}, "tasks.t.set_password"),
        ("pdf/encrypt", {"set_password": "x" * 128}, "tasks.t.set_password"),
        ("pdf/encrypt", {"set_password": "x", "allow_copy": "no"}, "tasks.t.allow_copy"),
        ("pdf/decrypt", {"password": 1234}, "tasks.t.password"),
        ("metadata/write", {}, "tasks.t.metadata"),
        ("metadata/write", {"metadata": {}}, "tasks.t.metadata"),
        ("metadata/write", {"metadata": {"Colour": "red"}}, "tasks.t.metadata"),
        ("metadata/write", {"metadata": {"ModDate": "yesterday"}}, "tasks.t.metadata"),
        ("metadata/write", {"metadata": {"Title": ["a"]}}, "tasks.t.metadata"),
        ("metadata/write", {"metadata": {"Trapped": "maybe"}}, "tasks.t.metadata"),
        ("metadata/write", {"metadata": {"Title": {"a": 1}}}, "tasks.t.metadata"),
        ("watermark", {}, "tasks.t.text"),
        ("watermark", {"text": "a", "image": "logo"}, "tasks.t.text"),
        ("watermark", {"text": "a", "opacity": 101}, "tasks.t.opacity"),
        ("watermark", {"text": "a", "font_name": "Comic Sans"}, "tasks.t.font_name"),
        ("watermark", {"text": "a", "font_color": "red"}, "tasks.t.font_color"),
        ("watermark", {"text": "a", "position_vertical": "middle"}, "tasks.t.position_vertical"),
        ("watermark", {"text": "a", "layer": "behind"}, "tasks.t.layer"),
        ("watermark", {"text": "a", "pages": "1-"}, "tasks.t.pages"),
        ("watermark", {"image": 7}, "tasks.t.image"),
        ("watermark", {"text": "a", "image": ["logo"]}, "tasks.t.image"),
        ("pdf/embed", {}, "tasks.t.attachments"),
        ("pdf/embed", {"attachments": []}, "tasks.t.attachments"),
        ("pdf/embed", {"attachments": ["logo", 7]}, "tasks.t.attachments"),
        ("pdf/embed", {"attachments": "nowhere"}, "tasks.t.input"),
    ],
)
def test_a_bad_field_is_a_422_naming_it(operation, fields, field):
    errors = errors_of(operation=operation, input="in", **fields)
    assert field in errors, errors


def test_metadata_write_names_the_allowed_entries():
    errors = errors_of(operation="metadata/write", input="in", metadata={"Colour": "red"})
    (message,) = errors["tasks.t.metadata"]
    assert "'Colour' is unknown" in message and "Title, Author" in message


def test_a_watermark_image_is_a_task_it_also_waits_for():
    tasks = {t.name: t for t in plan(operation="watermark", input="in", image="logo")}
    assert tasks["t"].depends_on == [tasks["in"].id, tasks["logo"].id]


def test_a_watermark_image_must_be_an_image_and_not_also_an_input():
    errors = errors_of(operation="watermark", input="in", image="in")
    assert errors["tasks.t.image"] == ["'in' is an input already; name it only as image"]
    with pytest.raises(InvalidData) as info:
        graph.plan(
            {"in": PDF, "t": {"operation": "watermark", "input": "in", "image": "doc"},
             "doc": {"operation": "import/url", "url": "https://example.test/a.docx"}},
            REGISTRY,
            lambda ref: None,
        )  # fmt: skip
    assert "must be one of png" in info.value.errors["tasks.t.image"][0]


def test_embedded_files_are_tasks_it_also_waits_for_in_order_and_of_any_type():
    doc = {"operation": "import/url", "url": "https://example.test/a.docx"}
    embed = {"operation": "pdf/embed", "input": "in", "attachments": ["doc", "logo"]}
    planned = graph.plan({"in": PDF, "logo": PNG, "doc": doc, "t": embed}, REGISTRY, lambda r: None)
    tasks = {t.name: t for t in planned}
    assert tasks["t"].depends_on == [tasks["in"].id, tasks["doc"].id, tasks["logo"].id]
    assert tasks["t"].output_format == "pdf"


def test_an_embedded_file_is_neither_an_input_nor_named_twice():
    errors = errors_of(operation="pdf/embed", input="in", attachments=["logo", "in", "logo"])
    assert errors["tasks.t.attachments"] == [
        "'in' is an input already; name it only as attachments",
        "'logo' is named twice",
    ]
    errors = errors_of(operation="pdf/embed", input="logo", attachments="in")
    assert errors["tasks.t.input"] == ["pdf/embed takes pdf, not png"]


def test_passwords_are_secret_fields_sealed_at_rest():
    assert OPERATIONS["pdf/encrypt"].secret_fields == {"set_password", "set_owner_password"}
    assert OPERATIONS["pdf/decrypt"].secret_fields == {"password"}


def test_watermark_takes_pictures_too_and_makes_their_format():
    [_, _, mark] = plan(operation="watermark", input="logo", text="x")
    assert (mark.output_format, mark.queue) == ("png", "light")
    errors = errors_of(operation="watermark", input="in", input_format="docx", text="x")
    assert errors["tasks.t.input"] == ["watermark takes pdf, png, jpg, webp, not docx"]
