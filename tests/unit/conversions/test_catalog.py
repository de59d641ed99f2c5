"""The operations list against the job graph: what is listed is planned, what is not is a 422."""

import uuid

import pytest

from appliance.conversions import graph
from appliance.conversions.catalog import ANY_FORMAT, Catalog, Filters
from appliance.conversions.operations.enabled import ENABLED, OPERATIONS
from appliance.engines.enabled import enabled_engines
from appliance.engines.registry import Registry
from appliance.errors import InvalidData

REGISTRY = Registry(enabled_engines())
CATALOG = Catalog(REGISTRY)
ROWS = CATALOG.operations(Filters(), options=True)
# every format some row names, and one that none does
NAMED = sorted({r["input_format"] for r in ROWS} | {r["output_format"] for r in ROWS} - {None, "*"})
UNKNOWN = "qqq"
INPUT = uuid.uuid4()  # an existing task whose file has the format under test
FORMATS = {op.name: op.formats for op in ENABLED if op.formats is not None}


# a valid value of each field an operation requires besides its input and output format
REQUIRED_SAMPLES = {
    "rotation": 90,
    "pages": "1",
    "metadata": {"Title": "T"},
    "url": "https://example.com/",
    "attachments": str(uuid.uuid4()),  # another existing task (pdf/embed)
}
# fields an operation needs one of (none is required alone)
ONE_OF_SAMPLES = {"pdf/encrypt": {"set_password": "x"}, "watermark": {"text": "x"}}


def output_field(operation, output_format):
    """The task's ``output_format`` field, for the operations whose task names its output,
    and the other fields it requires."""
    required = OPERATIONS[operation].required
    fields = {k: v for k, v in REQUIRED_SAMPLES.items() if k in required}
    fields |= ONE_OF_SAMPLES.get(operation, {})
    return fields | ({"output_format": output_format} if "output_format" in required else {})


def plan_one(operation, input_format, **fields):
    """Plan one task of ``operation`` over an existing task's file of ``input_format``."""
    task = {"operation": operation, **fields}
    if "input" in OPERATIONS[operation].required or input_format != "website":
        task["input"] = str(INPUT)  # capture-website takes none: its source is its url
    return graph.plan({"t": task}, REGISTRY, lambda ref: (INPUT, input_format))[0]


def refusal(operation, input_format, **fields):
    with pytest.raises(InvalidData) as info:
        plan_one(operation, input_format, **fields)
    assert info.value.status == 422
    return info.value.errors


def test_every_operation_that_takes_inputs_is_listed():
    takes_inputs = {op for op in OPERATIONS if not op.startswith(("import/", "export/"))}
    assert {r["operation"] for r in ROWS} == takes_inputs


def test_every_listed_row_is_planned_with_its_output_and_queue():
    wrong = []
    for row in ROWS:
        src = UNKNOWN if row["input_format"] == ANY_FORMAT else row["input_format"]
        fields = output_field(row["operation"], row["output_format"])
        try:
            task = plan_one(row["operation"], src, **fields)
        except InvalidData as exc:
            wrong.append((row["operation"], src, row["output_format"], exc.errors))
            continue
        if (task.output_format, task.queue) != (row["output_format"], row["queue"]):
            wrong.append((row["operation"], src, (task.output_format, task.queue), row))
    assert wrong == []
    assert len(ROWS) > 1000  # the convert pairs are all in it


@pytest.mark.parametrize("operation", sorted(FORMATS))
def test_an_input_format_not_listed_for_an_operation_is_refused_with_422(operation):
    listed = {r["input_format"] for r in ROWS if r["operation"] == operation}
    rule = FORMATS[operation]
    fields = output_field(operation, rule.outputs[0] if rule.outputs else None)
    if listed == {ANY_FORMAT}:  # takes any file: every format is planned, even an unknown one
        for fmt in [*NAMED, UNKNOWN]:
            assert plan_one(operation, fmt, **fields).operation == operation
        return
    refused = [fmt for fmt in [*NAMED, UNKNOWN] if fmt not in listed]
    assert refused, "a sample of formats the operation does not take"
    for fmt in refused:
        assert "tasks.t.input" in refusal(operation, fmt, **fields), (operation, fmt)


def test_a_conversion_pair_not_listed_is_refused_with_422():
    listed = {(r["input_format"], r["output_format"]) for r in ROWS if r["operation"] == "convert"}
    sources = sorted({src for src, _ in listed})
    for src in [*sources, UNKNOWN]:
        for dst in [*NAMED, UNKNOWN]:
            if (src, dst) not in listed:
                errors = refusal("convert", src, output_format=dst)
                assert "tasks.t.output_format" in errors, (src, dst)


def test_an_output_format_not_listed_is_refused_with_422():
    assert "tasks.t.output_format" in refusal("thumbnail", "png", output_format="gif")
    assert "tasks.t.output_format" in refusal("archive", "png", output_format="7z")
    assert "tasks.t.output_format" in refusal("merge", "png", output_format="docx")


def test_every_engine_an_operation_runs_is_enabled():
    engines = {op: rule.engine for op, rule in FORMATS.items()}
    for engine_id in filter(None, engines.values()):
        REGISTRY.engine(engine_id)  # enabled, or this raises


def test_rows_show_the_conversions_run_first_and_every_engine_on_the_way():
    [docx] = CATALOG.operations(Filters("thumbnail", "docx", "png"), options=True)
    assert docx["engine"] == "libreoffice+thumbnail" and docx["queue"] == "office"
    assert docx["route"] == [{"from": "docx", "to": "pdf", "engine": "libreoffice"}]
    assert "count" in docx["options"]["$defs"]["ThumbnailOptions"]["properties"]
    [pdf] = CATALOG.operations(Filters("merge", "pdf"))
    assert (pdf["engine"], pdf["route"], pdf["output_format"]) == ("pdf-merge", [], "pdf")
    [metadata] = CATALOG.operations(Filters("metadata"))
    assert (metadata["input_format"], metadata["output_format"]) == (ANY_FORMAT, None)
    optimize = CATALOG.operations(Filters("optimize"))
    assert {(r["input_format"], r["output_format"]) for r in optimize} == {
        ("pdf", "pdf"),
        ("jpg", "jpg"),
        ("png", "png"),
    }


def test_filters_select_rows_and_unknown_values_give_none():
    docx = CATALOG.operations(Filters(input_format="docx"))
    assert {"convert", "merge", "thumbnail", "metadata", "archive"} == {
        r["operation"] for r in docx
    }
    assert all(r["input_format"] in ("docx", ANY_FORMAT) for r in docx)
    office = CATALOG.operations(Filters(engine="libreoffice"))
    assert office and all("libreoffice" in r["engine"].split("+") for r in office)
    assert {r["operation"] for r in CATALOG.operations(Filters(output_format="zip"))} == {"archive"}
    for unknown in (
        Filters(operation="capture-site"),
        Filters(input_format=UNKNOWN),
        Filters(output_format=UNKNOWN),
        Filters(engine="imagemagick"),
    ):
        assert CATALOG.operations(unknown) == []


def test_options_come_only_when_asked_and_the_list_is_built_once():
    lean = CATALOG.operations(Filters("pdf/split-pages"))
    assert "options" not in lean[0]
    assert "options" in CATALOG.operations(Filters("pdf/split-pages"), options=True)[0]
    assert CATALOG.operations(Filters("pdf/split-pages"))[0] is lean[0]
