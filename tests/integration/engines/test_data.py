"""Every data pair (csv, tsv, json, jsonl, xlsx, ods, parquet, yaml, xml) converts a table made
here, through the sandboxed helper, and the output is parsed with an independent reader (csv,
json, PyYAML, ElementTree, openpyxl, pyarrow, the ODS content.xml) back into the same rows."""

from __future__ import annotations

import csv
import json
import time
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import openpyxl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from appliance.conversions.work import run_hops
from appliance.engines.data import FORMATS, TXT_SOURCES, DataEngine, DataOptions
from appliance.engines.enabled import enabled_engines
from appliance.engines.formats import mismatch
from appliance.engines.registry import Registry
from appliance.engines.sandbox import SandboxedEngine, sandboxed
from appliance.errors import PermanentError
from tests.integration.engines.corpus import CORPUS

COLUMNS = ["id", "name", "price", "in stock"]
ROWS = [
    [1, "Ann Åström", 2.5, True],
    [2, 'Bob, "the" builder', 10.25, False],
    [3, "line\nbreak", -7.0, True],
    [4, "007", 0.5, False],
]
ODS_NS = {
    "table": "urn:oasis:names:tc:opendocument:xmlns:table:1.0",
    "office": "urn:oasis:names:tc:opendocument:xmlns:office:1.0",
}


def _records() -> list[dict]:
    return [dict(zip(COLUMNS, row, strict=True)) for row in ROWS]


def _write_sample(fmt: str, path: Path) -> None:
    """The table in ``fmt``, written with the tests' own libraries (not the engine)."""
    if fmt in ("csv", "tsv"):
        with open(path, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh, delimiter="," if fmt == "csv" else "\t")
            w.writerow(COLUMNS)
            w.writerows([[_text(v) for v in r] for r in ROWS])
    elif fmt == "json":
        path.write_text(json.dumps(_records()))
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in _records()))
    elif fmt == "yaml":
        path.write_text(yaml.safe_dump(_records(), allow_unicode=True, sort_keys=False))
    elif fmt == "xml":
        root = ET.Element("items")
        for record in _records():
            item = ET.SubElement(root, "item")
            for key, value in record.items():
                ET.SubElement(item, "field", name=key).text = _text(value)
        ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
    elif fmt == "xlsx":
        book = openpyxl.Workbook()
        book.active.append(COLUMNS)
        for row in ROWS:
            book.active.append(row)
        book.save(path)
    elif fmt == "parquet":
        pq.write_table(pa.Table.from_pylist(_records()), path)
    elif fmt == "ods":  # no permissive ODS writer to test with: made from xlsx by the engine
        xlsx = path.with_suffix(".xlsx")
        _write_sample("xlsx", xlsx)
        DataEngine().convert(xlsx, path, "xlsx", "ods", DataOptions(), lambda f: None)


def _text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _read_back(fmt: str, path: Path) -> tuple[list[str], list[list]]:
    """Columns and rows of an output, parsed without the engine's code."""
    if fmt in ("csv", "tsv"):
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh, delimiter="," if fmt == "csv" else "\t"))
        return rows[0], rows[1:]
    if fmt == "txt":
        rows = [line.split("\t") for line in path.read_text(encoding="utf-8").split("\n")]
        assert rows.pop() == [""]  # every line ends with a line feed
        return rows[0], rows[1:]
    if fmt in ("json", "jsonl", "yaml"):
        text = path.read_text(encoding="utf-8")
        if fmt == "json":
            records = json.loads(text)
        elif fmt == "jsonl":
            records = [json.loads(line) for line in text.splitlines()]
        else:
            records = yaml.safe_load(text)
        return list(records[0]), [list(r.values()) for r in records]
    if fmt == "xml":
        records = []
        for row in ET.parse(path).getroot():
            records.append({(c.get("name") or c.tag): (c.text or "") for c in row})
        return list(records[0]), [list(r.values()) for r in records]
    if fmt == "xlsx":
        sheet = openpyxl.load_workbook(path, read_only=True).worksheets[0]
        rows = [list(r) for r in sheet.iter_rows(values_only=True)]
        return rows[0], rows[1:]
    if fmt == "parquet":
        table = pq.read_table(path)
        return table.column_names, [list(r.values()) for r in table.to_pylist()]
    if fmt == "ods":
        with zipfile.ZipFile(path) as z:
            assert z.read("mimetype") == b"application/vnd.oasis.opendocument.spreadsheet"
            root = ET.fromstring(z.read("content.xml"))
        rows = []
        for tr in root.iter(f"{{{ODS_NS['table']}}}table-row"):
            row = []
            for cell in tr:
                kind = cell.get(f"{{{ODS_NS['office']}}}value-type")
                if kind == "float":
                    row.append(float(cell.get(f"{{{ODS_NS['office']}}}value")))
                elif kind == "boolean":
                    row.append(cell.get(f"{{{ODS_NS['office']}}}boolean-value") == "true")
                else:
                    row.append("".join(cell.itertext()))
            rows.append(row)
        return rows[0], rows[1:]
    raise AssertionError(fmt)


def _same(got, want) -> bool:
    """Typed formats give the value back; text-only ones (csv, tsv, xml) its text."""
    if isinstance(want, bool):
        return got is want or got == _text(want)
    if isinstance(want, int | float):
        if isinstance(got, str):
            return float(got) == want
        return not isinstance(got, bool) and got == want
    return got == want


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    made = {}
    for fmt in FORMATS:
        made[fmt] = root / f"table.{fmt}"
        _write_sample(fmt, made[fmt])
    return made


PAIRS = sorted(DataEngine.descriptor.conversions)


def test_every_pair_among_the_data_formats_is_advertised():
    assert len(PAIRS) == len(FORMATS) * (len(FORMATS) - 1) + len(TXT_SOURCES)


@pytest.mark.parametrize(("src_fmt", "dst_fmt"), PAIRS)
def test_data_pair_keeps_every_row(pool, tmp_path, samples, src_fmt, dst_fmt):
    dst = tmp_path / f"out.{dst_fmt}"
    SandboxedEngine(DataEngine(), pool).convert(
        samples[src_fmt], dst, src_fmt, dst_fmt, DataOptions(), lambda f: None
    )
    assert mismatch(dst_fmt, dst) is None
    columns, rows = _read_back(dst_fmt, dst)
    assert columns == COLUMNS
    assert len(rows) == len(ROWS)
    for got_row, want_row in zip(rows, ROWS, strict=True):
        for got, want in zip(got_row, want_row, strict=True):
            if dst_fmt == "txt" and isinstance(want, str):
                want = " ".join(want.split())  # a row is a line: a cell's breaks are spaces
            assert _same(got, want), (got_row, want_row)


def test_csv_options_delimiter_and_no_header(pool, tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("1;a\n2;b\n")
    dst = tmp_path / "out.json"
    options = DataOptions(delimiter=";", header=False)
    SandboxedEngine(DataEngine(), pool).convert(src, dst, "csv", "json", options, lambda f: None)
    assert json.loads(dst.read_text()) == [
        {"column_1": 1, "column_2": "a"},
        {"column_1": 2, "column_2": "b"},
    ]


def test_sheet_option_picks_the_sheet_to_read(pool, tmp_path):
    book = openpyxl.Workbook()
    book.active.append(["skip"])
    second = book.create_sheet("Prices")
    second.append(["item", "cost"])
    second.append(["tea", 3])
    src = tmp_path / "book.xlsx"
    book.save(src)
    dst = tmp_path / "out.csv"
    engine = SandboxedEngine(DataEngine(), pool)
    engine.convert(src, dst, "xlsx", "csv", DataOptions(sheet="Prices"), lambda f: None)
    assert dst.read_text().splitlines() == ["item,cost", "tea,3"]
    with pytest.raises(PermanentError, match="no sheet 'Nope'") as info:
        engine.convert(src, dst, "xlsx", "csv", DataOptions(sheet="Nope"), lambda f: None)
    assert info.value.code == "INVALID_INPUT_FILE"


@pytest.mark.parametrize(
    ("fmt", "content", "says"),
    [
        ("csv", b'id,name\n1,"unclosed\n', "not a readable table"),
        ("csv", b"a,b\n1,2,3\n", "row 1 has 3 cells"),
        ("json", b'[{"a": 1}, {"a": 2', "not a readable table"),
        ("json", b'{"a": 1}', "must be a list of records"),
        ("jsonl", b'{"a": 1}\n{"a": \n', "line 2 is not JSON"),
        ("xlsx", b"PK\x03\x04" + b"\0" * 200, "not a sound zip container"),  # checked first
        ("parquet", b"PAR1" + b"\0" * 100, "not a readable table"),
        ("xml", b"<rows><row><a>1</a></row>", "not a readable table"),
        ("yaml", b"- a: 1\n- [unclosed\n", "not a readable table"),
        ("yaml", b"- ? [a, b]\n  : 1\n", "key must be a plain value"),
        ("yaml", b"- a: !custom 1\n", "unknown YAML tag"),
        ("yaml", b"- a: 1\n---\n- a: 2\n", "2 YAML documents"),
    ],
)
def test_malformed_input_is_an_invalid_input_error(pool, tmp_path, fmt, content, says):
    src = tmp_path / f"bad.{fmt}"
    src.write_bytes(content)
    with pytest.raises(PermanentError, match=says) as info:
        SandboxedEngine(DataEngine(), pool).convert(
            src,
            tmp_path / "o.csv" if fmt != "csv" else tmp_path / "o.json",
            fmt,
            "csv" if fmt != "csv" else "json",
            DataOptions(),
            lambda f: None,
        )
    assert info.value.code == "INVALID_INPUT_FILE"


def test_xml_entities_are_refused(pool, tmp_path):
    src = tmp_path / "bomb.xml"
    src.write_text(
        '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa">'
        '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]><r><row><x>&b;</x></row></r>'
    )
    with pytest.raises(PermanentError) as info:
        SandboxedEngine(DataEngine(), pool).convert(
            src, tmp_path / "o.csv", "xml", "csv", DataOptions(), lambda f: None
        )
    assert info.value.code == "INVALID_INPUT_FILE"


def test_yaml_alias_bomb_is_refused_quickly(pool, tmp_path):
    levels = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for n in range(1, 9):  # 10**9 values once expanded
        prev = chr(ord("a") + n - 1)
        levels.append(f"{chr(ord('a') + n)}: &{chr(ord('a') + n)} [{', '.join(['*' + prev] * 10)}]")
    src = tmp_path / "bomb.yaml"
    src.write_text("- " + "\n  ".join(levels) + "\n")
    started = time.monotonic()
    with pytest.raises(PermanentError, match="aliases") as info:
        SandboxedEngine(DataEngine(), pool).convert(
            src, tmp_path / "o.json", "yaml", "json", DataOptions(), lambda f: None
        )
    assert info.value.code == "INVALID_INPUT_FILE"
    assert time.monotonic() - started < 10


def test_router_gives_spreadsheet_pairs_to_the_data_engine():
    registry = Registry(enabled_engines())
    for src, dst in [("csv", "xlsx"), ("xlsx", "csv"), ("ods", "json"), ("json", "xlsx")]:
        assert [h.engine.descriptor.id for h in registry.route(src, dst)] == ["data"]
    # workbook to workbook keeps sheets, formatting and pictures: LibreOffice's
    for src, dst in [("ods", "xlsx"), ("xlsx", "ods"), ("xls", "ods"), ("xls", "xlsx")]:
        assert [h.engine.descriptor.id for h in registry.route(src, dst)] == ["libreoffice"]
    # a table's text is the data engine's; a workbook's keeps every sheet (LibreOffice's pdf)
    for src in TXT_SOURCES:
        assert [h.engine.descriptor.id for h in registry.route(src, "txt")] == ["data"]
    for src in ("xlsx", "ods", "xls"):
        route = [h.engine.descriptor.id for h in registry.route(src, "txt")]
        assert route == ["libreoffice", "pdfium"], (src, route)
    # LibreOffice keeps what only it can do; data formats reach it through a typed
    # intermediate (ods), not csv, whose numbers and text LibreOffice would have to guess
    assert [h.engine.descriptor.id for h in registry.route("xlsx", "pdf")] == ["libreoffice"]
    assert [(h.src, h.dst, h.engine.descriptor.id) for h in registry.route("parquet", "pdf")] == [
        ("parquet", "ods", "data"),
        ("ods", "pdf", "libreoffice"),
    ]


def _convert(pool, src: Path, dst: Path, src_fmt: str, dst_fmt: str) -> None:
    SandboxedEngine(DataEngine(), pool).convert(
        src, dst, src_fmt, dst_fmt, DataOptions(), lambda f: None
    )


def test_utf16_csv_and_json_are_read(pool, tmp_path):
    src = tmp_path / "table.csv"
    src.write_bytes(b"\xff\xfe" + "name,city\nÅsa,Zürich\n".encode("utf-16-le"))
    _convert(pool, src, tmp_path / "out.json", "csv", "json")
    assert json.loads((tmp_path / "out.json").read_text()) == [{"name": "Åsa", "city": "Zürich"}]
    src = tmp_path / "table.json"
    src.write_bytes(b"\xfe\xff" + '[{"a": "日本"}]'.encode("utf-16-be"))
    _convert(pool, src, tmp_path / "out.csv", "json", "csv")
    assert (tmp_path / "out.csv").read_text(encoding="utf-8").splitlines() == ["a", "日本"]


def test_csv_to_txt_is_the_cells_without_a_page_header(pool, tmp_path):
    registry = Registry(sandboxed(enabled_engines(), pool))
    assert [h.engine.descriptor.id for h in registry.route("csv", "txt")] == ["data"]
    src = tmp_path / "t.csv"
    src.write_text('id,name\n1,"Bob, ""the"" builder"\n')
    [out] = run_hops(registry.route("csv", "txt"), src, tmp_path, DataOptions(), lambda f: None)
    assert out.read_text() == 'id\tname\n1\tBob, "the" builder\n'


WIDE = 200_000


@pytest.fixture(scope="module")
def wide_csv(tmp_path_factory):
    """A table of 200,000 columns (2 rows), far wider than a sheet. (A million columns, as
    found in the wild, take 25 s to text on a busy machine: the same code path.)"""
    path = tmp_path_factory.mktemp("wide") / "wide.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(f"c{n}" for n in range(WIDE))
        writer.writerow(range(WIDE))
    return path


def test_a_table_wider_than_a_sheet_converts_whole_to_text(pool, wide_csv, tmp_path):
    dst = tmp_path / "wide.txt"
    _convert(pool, wide_csv, dst, "csv", "txt")
    header, values, end = dst.read_text().split("\n")
    assert end == ""
    assert len(header.split("\t")) == len(values.split("\t")) == WIDE
    assert values.split("\t")[-1] == str(WIDE - 1)


@pytest.mark.parametrize("fmt", ["xlsx", "ods"])
def test_a_table_wider_than_a_sheet_is_an_engine_limit_not_cut(pool, wide_csv, tmp_path, fmt):
    with pytest.raises(PermanentError) as info:
        _convert(pool, wide_csv, tmp_path / f"wide.{fmt}", "csv", fmt)
    assert info.value.code == "ENGINE_LIMIT"
    assert f"{WIDE} columns" in info.value.message and "16384 columns" in info.value.message


@pytest.mark.parametrize("content", [b"", b"\n\n", b"\r\n"])
def test_a_table_without_cells_has_no_text_found(pool, tmp_path, content):
    """What LibreOffice writes for a workbook holding only pictures, as csv."""
    src = tmp_path / "empty.csv"
    src.write_bytes(content)
    with pytest.raises(PermanentError) as info:
        _convert(pool, src, tmp_path / "out.jsonl", "csv", "jsonl")
    assert info.value.code == "NO_TEXT_FOUND"


def test_a_csv_in_semicolons_is_read_with_them(pool, tmp_path):
    """pandoc's own test csv: semicolons, and a quoted cell holding blank lines."""
    _convert(pool, CORPUS / "pandoc-01.csv", tmp_path / "out.json", "csv", "json")
    assert json.loads((tmp_path / "out.json").read_text()) == [
        {"Column1": "Data1", "Column2": "- data1\n\n- data2"}
    ]
