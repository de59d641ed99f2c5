import pytest

from appliance.conversions import graph
from appliance.engines.enabled import enabled_engines
from appliance.engines.registry import Registry
from appliance.errors import InvalidData

REGISTRY = Registry(enabled_engines())


def plan(tasks, external=lambda ref: None):
    return graph.plan(tasks, REGISTRY, external)


def errors_of(tasks):
    with pytest.raises(InvalidData) as info:
        plan(tasks)
    assert info.value.status == 422
    return info.value.errors


def test_valid_graph_links_dependencies_in_definition_order():
    tasks = plan(
        {
            "export": {"operation": "export/url", "input": ["conv"]},
            "up": {"operation": "import/upload"},
            "conv": {"operation": "convert", "input": "up", "output_format": "WEBP", "width": 10},
        }
    )
    by_name = {t.name: t for t in tasks}
    assert [t.name for t in tasks] == ["export", "up", "conv"]
    assert by_name["conv"].depends_on == [by_name["up"].id]
    assert by_name["export"].depends_on == [by_name["conv"].id]
    assert by_name["conv"].payload["output_format"] == "webp"
    assert by_name["conv"].queue == "light"


def test_unknown_operation_names_the_field_and_allowed_values():
    errors = errors_of({"a": {"operation": "import/ftp"}})
    assert "tasks.a.operation" in errors
    assert "import/url" in errors["tasks.a.operation"][0]


def test_missing_input_task_is_rejected():
    errors = errors_of({"c": {"operation": "convert", "input": "nope", "output_format": "png"}})
    assert errors["tasks.c.input"] == ["input task 'nope' does not exist"]


def test_required_fields_are_reported():
    errors = errors_of(
        {"c": {"operation": "convert", "input": "x"}, "u": {"operation": "import/url"}}
    )
    assert "tasks.c.output_format" in errors and "tasks.u.url" in errors


def test_cycle_is_rejected():
    errors = errors_of(
        {
            "a": {"operation": "convert", "input": "b", "output_format": "png"},
            "b": {"operation": "convert", "input": "a", "output_format": "jpg"},
        }
    )
    assert any("cycle" in m for msgs in errors.values() for m in msgs)


def test_no_conversion_path_is_rejected_when_the_input_format_is_known():
    errors = errors_of(
        {
            "in": {"operation": "import/url", "url": "https://example.com/a.png"},
            "c": {"operation": "convert", "input": "in", "output_format": "mp3"},
        }
    )
    assert "tasks.c.output_format" in errors


def test_unknown_target_is_rejected_even_when_the_input_format_is_not_known_yet():
    errors = errors_of(
        {
            "up": {"operation": "import/upload"},
            "c": {"operation": "convert", "input": "up", "output_format": "xyz"},
        }
    )
    assert "tasks.c.output_format" in errors


def test_invalid_option_names_the_option():
    errors = errors_of(
        {
            "in": {"operation": "import/url", "url": "https://example.com/a.png"},
            "c": {"operation": "convert", "input": "in", "output_format": "jpg", "quality": 500},
        }
    )
    assert "tasks.c.quality" in errors


def test_unknown_option_is_rejected():
    errors = errors_of(
        {
            "in": {"operation": "import/url", "url": "https://example.com/a.png"},
            "c": {"operation": "convert", "input": "in", "output_format": "jpg", "colour": "red"},
        }
    )
    assert any(k.startswith("tasks.c") for k in errors)


def test_import_url_must_be_http():
    errors = errors_of({"u": {"operation": "import/url", "url": "file:///etc/passwd"}})
    assert "tasks.u.url" in errors


def test_inputs_may_name_existing_tasks():
    import uuid

    known = uuid.uuid4()
    tasks = plan(
        {"c": {"operation": "convert", "input": str(known), "output_format": "png"}},
        external=lambda ref: (known, "jpg") if ref == str(known) else None,
    )
    assert tasks[0].depends_on == [known]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"operation": "import/url", "url": "https://x.test/a.png", "filename": 123}, "filename"),
        ({"operation": "import/url", "url": ["https://x.test/a.png"]}, "url"),
        ({"operation": "import/url", "url": "https://x.test/a.png", "headers": ["x"]}, "headers"),
        (
            {"operation": "import/url", "url": "https://x.test/a.png", "headers": {"a": 1}},
            "headers",
        ),
        ({"operation": "import/base64", "file": 5, "filename": "a.png"}, "file"),
    ],
)
def test_wrong_field_types_are_422_not_crashes(payload, field):
    errors = errors_of({"t": payload})
    assert f"tasks.t.{field}" in errors


def test_merge_of_known_formats_is_planned_on_the_heaviest_queue_of_their_routes():
    tasks = plan(
        {
            "a": {"operation": "import/url", "url": "https://example.test/a.png"},
            "b": {"operation": "import/url", "url": "https://example.test/b.docx"},
            "m": {"operation": "merge", "input": ["a", "b"], "output_format": "pdf"},
        }
    )
    merge = next(t for t in tasks if t.name == "m")
    assert merge.queue == "office"  # docx -> pdf runs LibreOffice
    assert merge.output_format == "pdf"
    assert len(merge.depends_on) == 2


def test_merge_makes_only_pdf_and_refuses_inputs_without_a_route_to_pdf():
    errors = errors_of(
        {
            "a": {"operation": "import/url", "url": "https://example.test/a.mp3"},
            "m": {"operation": "merge", "input": ["a"], "output_format": "docx", "dpi": 3},
        }
    )
    assert errors["tasks.m.output_format"] == ["merge makes pdf; allowed: pdf"]
    assert errors["tasks.m.input"] == ["cannot convert mp3 to pdf for merging"]
    assert errors["tasks.m.dpi"] == ["unknown field for merge: dpi"]


def test_a_video_is_refused_for_merging_and_for_conversion_beyond_its_gif():
    errors = errors_of(
        {
            "a": {"operation": "import/url", "url": "https://example.test/a.mp4"},
            "m": {"operation": "merge", "input": ["a"], "output_format": "pdf"},
        }
    )
    assert errors["tasks.m.input"] == ["cannot convert mp4 to pdf for merging"]
    errors = errors_of(
        {
            "a": {"operation": "import/url", "url": "https://example.test/a.mov"},
            "c": {"operation": "convert", "input": "a", "output_format": "png"},
        }
    )
    assert "tasks.c.output_format" in errors
    gif = plan(
        {
            "a": {"operation": "import/url", "url": "https://example.test/a.mov"},
            "c": {"operation": "convert", "input": "a", "output_format": "gif"},
        }
    )
    assert gif[1].queue == "media"


def test_optimize_checks_its_profile_and_input_format():
    errors = errors_of(
        {
            "a": {"operation": "import/url", "url": "https://example.test/a.docx"},
            "o": {"operation": "optimize", "input": "a", "profile": "smallest"},
        }
    )
    assert errors["tasks.o.input"] == ["optimize takes pdf, jpg, png, not docx"]
    assert "smallest" in errors["tasks.o.profile"][0]
    tasks = plan(
        {
            "a": {"operation": "import/upload"},
            "o": {"operation": "optimize", "input": "a", "input_format": "PDF", "profile": "max"},
        }
    )
    assert tasks[1].output_format == "pdf" and tasks[1].queue == "light"


def test_split_pages_takes_pdf_only():
    errors = errors_of(
        {
            "a": {"operation": "import/url", "url": "https://example.test/a.png"},
            "s": {"operation": "pdf/split-pages", "input": "a"},
        }
    )
    assert errors["tasks.s.input"] == ["pdf/split-pages takes pdf, not png"]


def test_pdf_to_pdf_convert_is_planned_for_pdf_a():
    tasks = plan(
        {
            "a": {"operation": "import/url", "url": "https://example.test/a.pdf"},
            "c": {"operation": "convert", "input": "a", "output_format": "pdf", "pdf_a": True},
        }
    )
    assert tasks[1].output_format == "pdf"


def test_ebooks_convert_on_the_office_queue():
    tasks = plan(
        {
            "a": {"operation": "import/url", "url": "https://example.test/book.epub"},
            "c": {"operation": "convert", "input": "a", "output_format": "mobi"},
        }
    )
    assert tasks[1].queue == "office"


@pytest.mark.parametrize(
    ("filename", "queue"),
    [("a.png", "light"), ("a.svg", "light"), ("a.docx", "office"), ("a.mp4", "media")],
)
def test_thumbnail_runs_on_the_queue_of_what_it_must_read(filename, queue):
    tasks = plan(
        {
            "in": {"operation": "import/base64", "filename": filename, "file": "eA=="},
            "t": {"operation": "thumbnail", "input": "in", "output_format": "JPEG", "width": 9},
        }
    )
    thumb = next(t for t in tasks if t.name == "t")
    assert thumb.queue == queue and thumb.payload["output_format"] == "jpg"


@pytest.mark.parametrize("count", [0, 101, "2"])
def test_thumbnail_options_are_checked_and_named(count):
    errors = errors_of(
        {
            "up": {"operation": "import/upload"},
            "t": {"operation": "thumbnail", "input": "up", "output_format": "png", "count": count},
        }
    )
    assert "tasks.t.count" in errors


def test_thumbnail_takes_a_count_of_up_to_100():
    tasks = plan(
        {
            "up": {"operation": "import/upload"},
            "t": {"operation": "thumbnail", "input": "up", "output_format": "png", "count": 100},
        }
    )
    assert next(t for t in tasks if t.name == "t").payload["count"] == 100


def test_archive_takes_several_inputs_and_tgz():
    tasks = plan(
        {
            "a": {"operation": "import/upload"},
            "b": {"operation": "import/upload"},
            "z": {"operation": "archive", "input": ["a", "b"], "output_format": "tgz"},
        }
    )
    archive = next(t for t in tasks if t.name == "z")
    assert archive.payload["output_format"] == "tar.gz" and len(archive.depends_on) == 2


def test_metadata_needs_only_an_input():
    tasks = plan(
        {"a": {"operation": "import/upload"}, "m": {"operation": "metadata", "input": "a"}}
    )
    assert next(t for t in tasks if t.name == "m").queue == "light"
    assert "tasks.m.input" in errors_of({"m": {"operation": "metadata"}})


@pytest.mark.parametrize(
    ("operation", "extra", "filename", "moves_to"),
    [
        ("convert", {"output_format": "pdf"}, "a.docx", "office"),
        ("convert", {"output_format": "webp"}, "a.png", None),
        ("thumbnail", {"output_format": "png"}, "a.docx", "office"),
        ("thumbnail", {"output_format": "png"}, "a.mp4", "media"),
        ("thumbnail", {"output_format": "png"}, "a.png", None),
        ("merge", {"output_format": "pdf"}, "a.pptx", "office"),
        ("merge", {"output_format": "pdf"}, "a.pdf", None),
        ("convert", {"output_format": "pdf", "input_format": "png"}, "a.docx", None),
    ],
)
def test_a_task_moves_to_the_queue_its_uploaded_input_needs(operation, extra, filename, moves_to):
    [_, task] = plan(
        {
            "up": {"operation": "import/upload"},
            "t": {"operation": operation, "input": "up", **extra},
        }
    )
    assert task.queue == "light"  # nothing is known of the input yet
    row = {"operation": operation, "queue": task.queue, "payload": task.payload}
    assert graph.queue_once_named(REGISTRY, row, filename) == moves_to


def test_rotate_pages_needs_a_quarter_turn_and_takes_only_pdf():
    [_, rotate] = plan(
        {
            "in": {"operation": "import/url", "url": "https://example.com/scan.pdf"},
            "r": {"operation": "pdf/rotate-pages", "input": "in", "rotation": -90, "pages": "2"},
        }
    )
    assert (rotate.output_format, rotate.queue) == ("pdf", "light")
    assert "tasks.r.rotation" in errors_of({"r": {"operation": "pdf/rotate-pages", "input": "x"}})
    errors = errors_of(
        {
            "in": {"operation": "import/url", "url": "https://example.com/a.docx"},
            "r": {"operation": "pdf/rotate-pages", "input": "in", "rotation": 45, "pages": "x"},
        }
    )
    assert {"tasks.r.input", "tasks.r.rotation"} <= set(errors)


def test_the_route_planned_for_a_known_input_format_travels_with_the_task():
    [_, conv, thumb] = plan(
        {
            "in": {"operation": "import/url", "url": "https://example.com/report.docx"},
            "c": {"operation": "convert", "input": "in", "output_format": "png"},
            "t": {"operation": "thumbnail", "input": "in", "output_format": "png"},
        }
    )
    assert [s["engine"] for s in conv.routes["docx"]] == ["libreoffice", "pdfium"]
    assert thumb.routes == {"docx": [{"from": "docx", "to": "pdf", "engine": "libreoffice"}]}
    [_, later] = plan(
        {
            "up": {"operation": "import/upload"},
            "c": {"operation": "convert", "input": "up", "output_format": "png"},
        }
    )
    assert later.routes == {}  # planned once the file is named (graph.plans_once_named)
    plans = graph.plans_once_named(
        REGISTRY,
        [{"id": later.id, "operation": "convert", "queue": "light", "payload": later.payload}],
        "photo.jpg",
    )
    assert plans == {
        str(later.id): {
            "queue": "light",
            "routes": {"jpg": [{"from": "jpg", "to": "png", "engine": "vips"}]},
        }
    }


@pytest.mark.parametrize("operation", [["convert"], {"a": 1}, 7, None])
def test_an_operation_that_is_not_a_string_is_a_422_naming_the_field(operation):
    errors = errors_of({"a": {"operation": operation}})
    assert "allowed: import/upload" in errors["tasks.a.operation"][0]


def test_the_database_moves_the_dependents_of_exactly_the_routed_operations():
    """appliance_routed_dependents names the operations whose waiting tasks an import's end
    plans and moves; it must name those that declare ``routed``."""
    import re
    from pathlib import Path

    import appliance.db
    from appliance.conversions.operations.enabled import ENABLED

    sql = (Path(appliance.db.__file__).parent / "functions.sql").read_text()
    body = sql[sql.index("FUNCTION public.appliance_routed_dependents") :]
    named = re.search(r"operation IN \(([^)]*)\)", body)
    assert named is not None
    in_sql = {name.strip().strip("'") for name in named.group(1).split(",")}
    assert in_sql == {op.name for op in ENABLED if op.routed}


@pytest.mark.parametrize(
    "url",
    [
        "http://[::1",
        "http://[not-an-ip]/x",
        "http://example.com:99999/a.png",
        "http://example.com:port/a.png",
        "https:///a.png",
    ],
)
def test_a_url_that_does_not_parse_is_a_422_naming_it(url):
    errors = errors_of({"in": {"operation": "import/url", "url": url}})
    assert errors["tasks.in.url"] == ["must be an http:// or https:// URL"]


def test_a_chain_of_1500_tasks_is_checked_without_running_out_of_stack():
    tasks = {"t0": {"operation": "import/url", "url": "https://example.com/a.png"}}
    for n in range(1, 1500):
        out = "jpg" if n % 2 else "png"
        tasks[f"t{n}"] = {"operation": "convert", "input": f"t{n - 1}", "output_format": out}
    planned = plan(dict(reversed(tasks.items())))  # each task before its input: the deep case
    assert planned[0].depends_on == [planned[1].id]


def test_a_nul_character_in_a_field_is_422_naming_the_field():
    errors = errors_of({"a": {"operation": "import/url", "url": "https://example.com/\x00.png"}})
    assert list(errors) == ["tasks.a.url"]


def test_a_nul_character_deep_in_a_payload_names_its_path():
    payload = {"operation": "import/upload", "opts": {"list": ["ok", {"k": "v\x00"}]}}
    assert list(errors_of({"a": payload})) == ["tasks.a.opts.list.1.k"]


def test_a_nul_character_in_a_key_or_a_task_name_is_422():
    assert list(errors_of({"a": {"operation": "import/upload", "k\x00": 1}})) == ["tasks.a"]
    assert list(errors_of({"a\x00": {"operation": "import/upload"}})) == ["tasks.a\x00"]


def test_a_payload_nested_past_the_recursion_limit_is_walked_without_recursion():
    deep: object = "\x00"
    for _ in range(5000):
        deep = [deep]
    errors = errors_of({"a": {"operation": "import/upload", "x": deep}})
    assert list(errors) == ["tasks.a.x" + ".0" * 5000]


@pytest.mark.parametrize("tasks", [{}, [], None, "a task", ["a"], 7])
def test_a_job_without_a_task_object_is_refused_naming_tasks(tasks):
    with pytest.raises(InvalidData) as info:
        plan(tasks)
    assert info.value.message == "The job needs at least one task"
    assert info.value.errors == {"tasks": ["must be a non-empty object"]}


def test_every_broken_task_of_a_job_is_reported_at_once_each_under_its_field():
    """One 422 lists each task's problem (the client fixes them all in one go), each with
    its message: checking goes on past a broken task."""
    assert errors_of(
        {
            "a": "not an object",
            "b": {"operation": "convert", "input": "in\u0000x", "output_format": "png"},
            "c": {"operation": "import/ftp"},
            "d": {"operation": "import/url", "url": "", "filename": 5},
            "e": {"operation": "convert", "input": [1], "output_format": "png"},
            "f": {"operation": "convert", "input": {"x": 1}, "output_format": "png"},
        }
    ) == {
        "tasks.a": ["must be an object"],
        "tasks.b.input": ["must not contain the NUL character (\\u0000)"],
        "tasks.c.operation": [
            "unknown operation 'import/ftp'; allowed: import/upload, import/url, import/base64,"
            " import/s3, convert, merge, optimize, pdf/split-pages, pdf/rotate-pages,"
            " pdf/extract-pages, pdf/a, pdf/ocr, pdf/encrypt, pdf/decrypt, pdf/flatten, pdf/embed,"
            " watermark, thumbnail, capture-website, metadata, metadata/write, archive, export/url,"
            " export/s3"
        ],
        "tasks.d.url": ["url is required for import/url"],
        "tasks.d.filename": ["must be a string"],
        "tasks.e.input": ["must be a task name or a list of task names"],
        "tasks.f.input": ["must be a task name or a list of task names"],
    }


def test_every_missing_input_is_reported_and_found_ones_keep_their_format():
    existing = "5b0c3a5e-0000-4000-8000-000000000001"
    errors = errors_of(
        {
            "a": {"operation": "convert", "input": ["x", "y"], "output_format": "png"},
            "b": {"operation": "convert", "input": "z", "output_format": "png"},
        }
    )
    assert errors == {
        "tasks.a.input": ["input task 'x' does not exist", "input task 'y' does not exist"],
        "tasks.b.input": ["input task 'z' does not exist"],
    }
    import uuid

    found = {existing: (uuid.UUID(existing), "mp4")}
    refused = pytest.raises(InvalidData)
    with refused as info:  # the existing input's format (mp4) is what the route is checked for
        plan(
            {"c": {"operation": "convert", "input": [existing], "output_format": "docx"}},
            found.get,
        )
    assert list(info.value.errors) == ["tasks.c.output_format"]


@pytest.mark.parametrize(
    ("tasks", "cycle"),
    [
        ({"a": ["b"], "b": ["a"]}, ("a", "a -> b -> a")),
        ({"a": ["a"]}, ("a", "a -> a")),
        ({"x": [], "a": ["x", "b"], "b": ["c"], "c": ["a"]}, ("a", "a -> b -> c -> a")),
        ({"a": ["b"], "b": ["c"], "c": ["b"]}, ("b", "b -> c -> b")),  # not through the start
        ({"b": ["a"], "a": [], "c": ["d"], "d": ["c"]}, ("c", "c -> d -> c")),  # after a done one
    ],
)
def test_a_cycle_is_named_from_where_it_was_entered(tasks, cycle):
    named, path = cycle
    job = {
        name: {"operation": "convert", "input": inputs, "output_format": "png"}
        if inputs
        else {"operation": "import/upload"}
        for name, inputs in tasks.items()
    }
    with pytest.raises(InvalidData) as info:
        plan(job)
    assert info.value.message == "The given data was invalid."
    assert info.value.errors == {f"tasks.{named}.input": [f"the task graph has a cycle: {path}"]}


def test_a_named_input_moves_a_task_to_the_heaviest_queue_of_the_two():
    task = {"id": 1, "operation": "convert", "queue": "media", "payload": {"output_format": "pdf"}}
    # LibreOffice (office) reads the docx; media is the heavier class and stays
    assert graph.plans_once_named(REGISTRY, [task], "a.docx")["1"]["queue"] == "media"
    assert (
        graph.plans_once_named(REGISTRY, [{**task, "queue": "light"}], "a.docx")["1"]["queue"]
        == "office"
    )
    assert graph.plans_once_named(REGISTRY, [task], "no-extension") == {}


@pytest.mark.parametrize("timeout", [True, "5", 0, -1, graph.MAX_TIMEOUT + 1, [5]])
def test_a_timeout_that_is_no_positive_number_up_to_a_day_is_refused(timeout):
    errors = errors_of({"u": {"operation": "import/upload", "timeout": timeout}})
    assert errors == {
        "tasks.u.timeout": [f"must be a number of seconds above 0, at most {graph.MAX_TIMEOUT}"]
    }


@pytest.mark.parametrize("timeout", [0.5, 1, graph.MAX_TIMEOUT])
def test_a_timeout_above_0_up_to_a_day_is_taken(timeout):
    [task] = plan({"u": {"operation": "import/upload", "timeout": timeout}})
    assert task.payload["timeout"] == timeout


@pytest.mark.parametrize("headers", [["a"], {"a": 1}, "x"])
def test_headers_must_be_an_object_of_strings(headers):
    url = {"operation": "import/url", "url": "https://example.com/a.png", "headers": headers}
    assert errors_of({"i": url}) == {
        "tasks.i.headers": ["must be an object of string header values"]
    }


def test_an_engine_version_pin_is_checked_against_the_installed_version():
    errors = errors_of(
        {
            "u": {"operation": "import/upload"},
            "c": {
                "operation": "convert",
                "input": "u",
                "input_format": "png",
                "output_format": "webp",
                "engine": "vips",
                "engine_version": "0.0-not-installed",
            },
        }
    )
    assert list(errors) == ["tasks.c.engine_version"]


def test_every_task_gets_an_id_of_its_own():
    tasks = plan({"a": {"operation": "import/upload"}, "b": {"operation": "import/upload"}})
    assert len({t.id for t in tasks}) == 2 and all(t.id for t in tasks)
