"""Tabular data: csv, tsv, json, jsonl, xlsx, ods, parquet, yaml, xml among each other.

Every format is read into one shape, a table (column names + rows of values), and written
from it. Readers of formats whose columns are known up front (csv, tsv, xlsx, ods, parquet)
yield rows lazily, and most writers stream, so a large csv -> jsonl never holds the whole
table; json, yaml and xml inputs (columns are the union of the records' keys) and parquet
output (one schema for the file) hold it.

Libraries (all permissive): pyarrow (parquet), python-calamine (reads xlsx and ods),
openpyxl in write-only mode (writes xlsx), PyYAML's safe loader/dumper, defusedxml (no
entities, no DTDs); ods output is written here (a zip of XML).

Shapes: json is an array of objects, jsonl one object per line, yaml a list of mappings,
xml a root element whose children are the records and whose grandchildren the fields
(``<rows><row><id>1</id></row></rows>``; a name that is not an XML name is written as
``<field name="...">``).
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import decimal
import io
import json
import math
import re
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated, Any
from xml.sax.saxutils import escape, quoteattr

import msgspec

from appliance.engines import Descriptor, Progress
from appliance.engines.formats import as_utf8
from appliance.errors import PermanentError

FORMATS = ("csv", "tsv", "json", "jsonl", "xlsx", "ods", "parquet", "yaml", "xml")
LOSSY = ("csv", "tsv", "xml")  # text only: numbers, booleans and dates become text
# Tables of one sheet also become plain text here (workbooks keep LibreOffice's text of every
# sheet): a csv's text is its cells, not a printed page's header and footer.
TXT_SOURCES = ("csv", "tsv", "json", "jsonl", "parquet", "yaml", "xml")
# A sheet's size in Excel (column XFD) and in LibreOffice Calc 7.4 and later
SHEET_MAX_COLUMNS = 16384
SHEET_MAX_ROWS = 1_048_576
ENGINE_REVISION = "1"  # bump when output for the same input and options changes
PARQUET_BATCH_ROWS = 65536
YAML_BATCH_ROWS = 500
CSV_SNIFF_CHARS = 1 << 16  # of a csv's first line, read for its delimiter
CSV_FIELD_LIMIT = 16 << 20  # characters in one csv cell (the csv module's default is 128 Ki)
_INT = re.compile(r"-?(0|[1-9][0-9]{0,17})")  # no leading zeros: "007" stays text
_FLOAT = re.compile(r"-?(0|[1-9][0-9]*)\.[0-9]+([eE][-+]?[0-9]+)?")
_TXT_SPACE = re.compile(r"[\t\r\n\v\f]+")
_XML_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9._-]*")
# Characters XML 1.0 (and so xlsx and ods) cannot hold.
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
# Readers that take UTF-8 only (UTF-16 and UTF-32 inputs are re-encoded for them first); the
# XML reader follows the document's own mark and declaration.
UTF8_READERS = frozenset({"csv", "tsv", "json", "jsonl", "yaml"})
ODS_MIME = "application/vnd.oasis.opendocument.spreadsheet"


class DataOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # Field separator of the csv side (input or output); tsv always uses a tab. Reading, the
    # default comma gives way to semicolons (tabs, bars) on a first line without commas.
    delimiter: Annotated[str, msgspec.Meta(min_length=1, max_length=1)] = ","
    # csv, tsv, xlsx, ods: the first row holds the column names (read and written). Without
    # one, columns are named column_1, column_2, ...
    header: bool = True
    # xlsx, ods: the sheet to read (default: the first) or the name of the sheet written.
    sheet: Annotated[str, msgspec.Meta(min_length=1, max_length=31)] | None = None
    # csv, tsv, xml: cells that look like numbers become numbers, empty cells null.
    infer_types: bool = True


@dataclass
class Table:
    columns: list[str]
    rows: Iterable[list[Any]]  # each as long as columns


class BadTable(ValueError):
    """The input is readable but not a table of records."""


class EmptyTable(BadTable):
    """The input holds no cells at all (an empty file, a sheet of pictures only)."""


@cache
def _libs() -> tuple[Any, Any, Any]:
    import pyarrow
    import pyarrow.parquet
    import python_calamine
    import yaml

    return pyarrow, python_calamine, yaml


def _version() -> str:
    """From the installed packages' metadata, without importing them: a helper that never
    converts data (most serve images) does not pay ~1 s and ~15 MB for pyarrow at start."""
    from importlib.metadata import version

    names = ("pyarrow", "python-calamine", "openpyxl", "pyyaml")
    return "+".join(f"{n}-{version(n)}" for n in names) + f"+{ENGINE_REVISION}"


def _parse_errors() -> tuple[type[BaseException], ...]:
    """What the readers raise on a malformed input (as opposed to a bug here)."""
    import xml.etree.ElementTree as ET

    import defusedxml

    pyarrow, calamine, yaml = _libs()
    return (
        BadTable,
        csv.Error,
        UnicodeDecodeError,
        json.JSONDecodeError,
        yaml.YAMLError,
        ET.ParseError,
        defusedxml.DefusedXmlException,
        calamine.CalamineError,
        zipfile.BadZipFile,
        pyarrow.ArrowException,
    )


class DataEngine:
    descriptor = Descriptor(
        id="data",
        conversions=frozenset((a, b) for a in FORMATS for b in FORMATS if a != b)
        | {(a, "txt") for a in TXT_SOURCES},
        options=DataOptions,
        queue="light",
        version=_version,
        family="data",
        # Cheaper than LibreOffice (2.0), which also converts csv with xlsx / ods: the router
        # gives those pairs to this engine (but workbook to workbook: office.py).
        cost=0.5,
        # Text targets lose the values' types: on the way to another engine (json -> pdf)
        # the router then prefers ods / xlsx, which LibreOffice reads without guessing.
        pair_costs={(a, b): 0.6 for a in FORMATS for b in LOSSY if a != b}
        # To txt: below LibreOffice's printed page (pdf, then its text: 3) for a table, but
        # above it after a workbook's first hop (xlsx -> json -> txt: 0.5 + 2.6), so a
        # workbook's text keeps every sheet.
        | {(a, "txt"): 2.6 for a in TXT_SOURCES},
    )

    def convert(
        self,
        src: Path,
        dst: Path,
        src_format: str,
        dst_format: str,
        options: DataOptions,
        progress: Progress,
    ) -> None:
        if src_format in UTF8_READERS:
            src = as_utf8(src, dst.with_name(f"utf8-{src.name}"))
        try:
            table = READERS[src_format](src, options)
            progress(0.3)
            WRITERS[dst_format](table, dst, options)
        except EmptyTable as exc:  # nothing to convert, as OCR finds no words in a picture
            raise PermanentError(
                f"The {src_format} file holds no table: {exc}", code="NO_TEXT_FOUND"
            ) from exc
        except MemoryError as exc:  # Arrow's own allocation failures are MemoryErrors too
            raise PermanentError(
                "The table needs more memory than the engine may use", code="ENGINE_LIMIT"
            ) from exc
        except _parse_errors() as exc:
            raise PermanentError(
                f"The {src_format} file is not a readable table: {_describe(exc)}",
                code="INVALID_INPUT_FILE",
            ) from exc
        progress(1.0)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


# -- values ------------------------------------------------------------------------------------
def _infer(text: str) -> Any:
    if text == "":
        return None
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    if text in ("true", "false"):  # as the text writers spell booleans
        return text == "true"
    return text


def _plain(value: Any) -> Any:
    """A value for formats without nested or binary values: JSON-safe scalars only."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)  # exact, where a float would round
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, list | dict | tuple):
        return json.dumps(value, default=_json_default, ensure_ascii=False)
    return str(value)


def _json_default(value: Any) -> Any:
    """For json.dumps: values JSON has no type for (dates, decimals, bytes)."""
    return _plain(value)


def _text(value: Any) -> str:
    plain = _plain(value)
    if plain is None:
        return ""
    if isinstance(plain, bool):
        return "true" if plain else "false"
    if isinstance(plain, float):
        return repr(plain)  # shortest exact form, read back as the same float
    return str(plain)


def _unique(names: Iterable[Any]) -> list[str]:
    """Column names as strings, blanks named by position, duplicates numbered."""
    out: list[str] = []
    seen: set[str] = set()
    for i, raw in enumerate(names, start=1):
        name = _text(raw).strip() or f"column_{i}"
        base, n = name, 2
        while name in seen:
            name, n = f"{base}_{n}", n + 1
        seen.add(name)
        out.append(name)
    return out


def _positional(width: int) -> list[str]:
    return [f"column_{i}" for i in range(1, width + 1)]


def _fit(rows: Iterable[list[Any]], width: int) -> Iterator[list[Any]]:
    """Rows padded to the header's width; a row longer than the header is an error."""
    for n, row in enumerate(rows, start=1):
        if len(row) > width:
            if not any(v not in (None, "") for v in row[width:]):
                row = row[:width]
            else:
                raise BadTable(f"row {n} has {len(row)} cells but the header has {width}")
        yield row + [None] * (width - len(row))


def _records(items: Any, what: str) -> Table:
    """A table from a list of mappings (json, yaml, xml): columns in order of appearance."""
    if not isinstance(items, list):
        raise BadTable(f"{what} must be a list of records")
    columns: dict[str, None] = {}
    for n, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            raise BadTable(f"{what} item {n} is not a record (an object of fields)")
        for key in item:
            columns.setdefault(str(key), None)
    names = list(columns)
    rows = (
        [item.get(name) for name in names]
        for item in ({str(k): v for k, v in i.items()} for i in items)
    )
    return Table(names, rows)


# -- readers -----------------------------------------------------------------------------------
def _read_delimited(src: Path, options: DataOptions, delimiter: str) -> Table:
    csv.field_size_limit(CSV_FIELD_LIMIT)
    fh = open(src, encoding="utf-8-sig", newline="")  # noqa: SIM115  (closed by the generator)
    reader = csv.reader(fh, delimiter=delimiter, strict=True)
    try:
        first = next(reader, None)
        while first == []:  # blank lines before the first row (all of a workbook of pictures)
            first = next(reader, None)
        if first is None:
            raise EmptyTable("the file is empty")
    except BaseException:
        fh.close()
        raise
    columns = _unique(first) if options.header else _positional(len(first))

    def rows() -> Iterator[list[Any]]:
        with fh:
            if not options.header:
                yield _cells(first, options)
            for row in reader:
                if row:  # a blank line is no record
                    yield _cells(row, options)

    return Table(columns, _fit(rows(), len(columns)))


def _cells(row: list[str], options: DataOptions) -> list[Any]:
    return [_infer(v) for v in row] if options.infer_types else row


def _read_csv(src: Path, options: DataOptions) -> Table:
    return _read_delimited(src, options, _delimiter(src, options.delimiter))


def _delimiter(src: Path, asked: str) -> str:
    """``asked``, but for a first line that has none of it and has semicolons (or tabs, or
    bars): the csv Excel writes in many locales uses semicolons, and read with commas it is
    one column, or a quoting error."""
    with open(src, encoding="utf-8-sig", errors="replace", newline="") as fh:
        first = fh.readline(CSV_SNIFF_CHARS)
    if asked != "," or "," in first:
        return asked
    return next((other for other in (";", "\t", "|") if other in first), asked)


def _read_tsv(src: Path, options: DataOptions) -> Table:
    return _read_delimited(src, options, "\t")


def _read_json(src: Path, options: DataOptions) -> Table:
    with open(src, encoding="utf-8-sig") as fh:
        return _records(json.load(fh), "The JSON document")


def _read_jsonl(src: Path, options: DataOptions) -> Table:
    items = []
    with open(src, encoding="utf-8-sig") as fh:
        for n, line in enumerate(fh, start=1):
            if line.strip():
                try:
                    items.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise BadTable(f"line {n} is not JSON: {exc.msg}") from exc
    return _records(items, "Each JSON line")


def _read_yaml(src: Path, options: DataOptions) -> Table:
    documents = _yaml_documents(src)
    if len(documents) != 1:
        raise BadTable(f"the file holds {len(documents)} YAML documents, not one")
    return _records(documents[0], "The YAML document")


def _yaml_documents(src: Path) -> list[Any]:
    """The documents, built from libyaml's event stream with PyYAML's safe scalar rules.

    ``yaml.safe_load`` first builds a node tree with two position marks per value: measured
    on a 100 000-record file, 4x slower and 6x the memory of building the values directly.
    Aliases are refused: they let a few bytes stand for billions of values once written out
    ("billion laughs"), and tables do not need them.
    """
    _, _, yaml = _libs()
    with open(src, "rb") as fh:
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(fh)
        try:
            return _yaml_build(yaml, loader)
        finally:
            loader.dispose()


_KEY = object()  # a mapping waiting for its next key


def _yaml_build(yaml: Any, loader: Any) -> list[Any]:
    documents: list[Any] = []
    stack: list[list[Any]] = []  # [container, pending key] of the collections being built

    def add(value: Any) -> None:
        if not stack:
            documents.append(value)
            return
        top = stack[-1]
        if isinstance(top[0], list):
            top[0].append(value)
        elif top[1] is _KEY:
            top[1] = value
        else:
            try:
                top[0][top[1]] = value
            except TypeError as exc:  # a list or mapping as a key
                raise BadTable("a YAML key must be a plain value") from exc
            top[1] = _KEY

    while (event := loader.get_event()) is not None:
        kind = type(event)
        if kind is yaml.ScalarEvent:
            add(_yaml_scalar(yaml, loader, event))
        elif kind is yaml.SequenceStartEvent:
            stack.append([[], None])
        elif kind is yaml.MappingStartEvent:
            stack.append([{}, _KEY])
        elif kind is yaml.SequenceEndEvent or kind is yaml.MappingEndEvent:
            add(stack.pop()[0])
        elif kind is yaml.AliasEvent:
            raise BadTable("YAML aliases (*name) are not accepted in a table")
    return documents


def _yaml_scalar(yaml: Any, loader: Any, event: Any) -> Any:
    tag = event.tag if event.tag not in (None, "!") else None
    tag = tag or loader.resolve(yaml.ScalarNode, event.value, event.implicit)
    construct = loader.yaml_constructors.get(tag)
    if construct is None:
        raise BadTable(f"unknown YAML tag {tag}")
    try:
        return construct(loader, yaml.ScalarNode(tag, event.value))
    except (ValueError, TypeError) as exc:
        raise BadTable(f"bad {tag} value {event.value[:40]!r}") from exc


def _read_xml(src: Path, options: DataOptions) -> Table:
    from defusedxml.ElementTree import iterparse

    records: list[dict[str, Any]] = []
    depth = 0
    for event, element in iterparse(str(src), events=("start", "end")):
        if event == "start":
            depth += 1
            continue
        depth -= 1
        if depth == 1:  # a record ended: keep its fields, drop its tree
            records.append(_xml_record(element, options))
            element.clear()
    return _records(records, "The XML document's root element")


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _xml_record(element: Any, options: DataOptions) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    children = list(element)
    if not children:
        fields.update(element.attrib)
    for child in children:
        name = _local(child.tag)
        if name == "field" and "name" in child.attrib:
            name = child.attrib["name"]
        text = "".join(child.itertext())
        fields[name] = _infer(text) if options.infer_types else text
    return fields


def _read_sheet(src: Path, options: DataOptions) -> Table:
    _, calamine, _ = _libs()
    book = calamine.load_workbook(str(src))
    if options.sheet is not None:
        if options.sheet not in book.sheet_names:
            raise BadTable(
                f"there is no sheet {options.sheet!r}; sheets: {', '.join(book.sheet_names)}"
            )
        sheet = book.get_sheet_by_name(options.sheet)
    elif book.sheet_names:
        sheet = book.get_sheet_by_index(0)
    else:
        raise BadTable("the workbook has no sheets")
    grid = [[_cell(v) for v in row] for row in sheet.to_python(skip_empty_area=False)]
    while grid and all(v is None for v in grid[-1]):
        grid.pop()  # trailing empty rows are formatting, not records
    if not grid:
        raise EmptyTable("the sheet is empty")
    if options.header:
        return Table(_unique(grid[0]), _fit(grid[1:], len(grid[0])))
    return Table(_positional(len(grid[0])), _fit(grid, len(grid[0])))


def _cell(value: Any) -> Any:
    """Spreadsheets store every number as a float and an empty cell as ''."""
    if value == "":
        return None
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def _read_parquet(src: Path, options: DataOptions) -> Table:
    pyarrow, _, _ = _libs()
    parquet = pyarrow.parquet.ParquetFile(str(src))
    columns = _unique(parquet.schema_arrow.names)

    def rows() -> Iterator[list[Any]]:
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
            data = batch.to_pydict()
            yield from (list(r) for r in zip(*data.values(), strict=True))

    return Table(columns, rows())


# -- writers -----------------------------------------------------------------------------------
def _write_delimited(table: Table, dst: Path, options: DataOptions, delimiter: str) -> None:
    with open(dst, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, delimiter=delimiter, lineterminator="\r\n")
        if options.header:
            writer.writerow(table.columns)
        writer.writerows([_text(v) for v in row] for row in table.rows)


def _write_csv(table: Table, dst: Path, options: DataOptions) -> None:
    _write_delimited(table, dst, options, options.delimiter)


def _write_tsv(table: Table, dst: Path, options: DataOptions) -> None:
    _write_delimited(table, dst, options, "\t")


def _write_txt(table: Table, dst: Path, options: DataOptions) -> None:
    """One line per row, cells parted by a tab; a cell's own line breaks and tabs become
    spaces, so that a line is a row."""
    with open(dst, "w", encoding="utf-8", newline="\n") as fh:
        if options.header:
            fh.write(_txt_line(table.columns))
        for row in table.rows:
            fh.write(_txt_line(row))


def _txt_line(row: Iterable[Any]) -> str:
    return "\t".join(_TXT_SPACE.sub(" ", _text(v)) for v in row) + "\n"


def _dicts(table: Table) -> Iterator[dict[str, Any]]:
    return (dict(zip(table.columns, row, strict=True)) for row in table.rows)


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):  # NaN and inf are not JSON
        return None
    return value


def _dump(record: dict[str, Any]) -> str:
    return json.dumps(
        {k: _json_value(v) for k, v in record.items()},
        ensure_ascii=False,
        default=_json_default,
        allow_nan=False,
    )


def _write_json(table: Table, dst: Path, options: DataOptions) -> None:
    with open(dst, "w", encoding="utf-8") as fh:
        fh.write("[")
        for n, record in enumerate(_dicts(table)):
            fh.write(",\n" if n else "\n")
            fh.write(_dump(record))
        fh.write("\n]\n")


def _write_jsonl(table: Table, dst: Path, options: DataOptions) -> None:
    with open(dst, "w", encoding="utf-8") as fh:
        for record in _dicts(table):
            fh.write(_dump(record) + "\n")


def _yaml_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str | dt.date | list | dict):
        return value
    return _plain(value)


def _write_yaml(table: Table, dst: Path, options: DataOptions) -> None:
    _, _, yaml = _libs()
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    wrote = False
    with open(dst, "w", encoding="utf-8") as fh:
        # A few hundred records per dump: the list streams, and dumps of "- item" blocks
        # written one after another are one list (a dumper per record costs 3x the time).
        for batch in _batches(_dicts(table), YAML_BATCH_ROWS):
            items = [{k: _yaml_value(v) for k, v in record.items()} for record in batch]
            yaml.dump(items, fh, Dumper=dumper, sort_keys=False, allow_unicode=True)
            wrote = True
        if not wrote:
            fh.write("[]\n")


def _batches(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _xml_text(value: Any) -> str:
    return escape(_XML_ILLEGAL.sub("", _text(value)))


def _write_xml(table: Table, dst: Path, options: DataOptions) -> None:
    tags = []
    for name in table.columns:
        if _XML_NAME.fullmatch(name) and not name.lower().startswith("xml") and name != "field":
            tags.append((f"<{name}>", f"</{name}>"))
        else:
            tags.append((f"<field name={quoteattr(_XML_ILLEGAL.sub('', name))}>", "</field>"))
    with open(dst, "w", encoding="utf-8") as fh:
        fh.write('<?xml version="1.0" encoding="UTF-8"?>\n<rows>\n')
        for row in table.rows:
            cells = "".join(
                f"{open_tag}{_xml_text(v)}{close_tag}"
                for (open_tag, close_tag), v in zip(tags, row, strict=True)
                if v is not None
            )
            fh.write(f"  <row>{cells}</row>\n")
        fh.write("</rows>\n")


def _xlsx_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:  # Excel has no time zones: store UTC
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value
    if isinstance(value, dt.date | dt.time):
        return value
    return _XML_ILLEGAL.sub("", _text(value))


def _write_xlsx(table: Table, dst: Path, options: DataOptions) -> None:
    from openpyxl import Workbook

    rows = _sheet_rows(table, options, "xlsx")  # refuses a table too wide at once
    book = Workbook(write_only=True)  # rows go to disk as they come
    sheet = book.create_sheet(options.sheet or "Sheet1")
    if options.header:
        sheet.append(table.columns)
    for row in rows:
        sheet.append([_xlsx_value(v) for v in row])
    book.save(str(dst))


def _sheet_rows(table: Table, options: DataOptions, fmt: str) -> Iterator[list[Any]]:
    """The table's rows, refused (ENGINE_LIMIT) past a sheet's size: Excel's and LibreOffice
    Calc's, which cut the rest off without a word (openpyxl refuses past it). Too many
    columns are refused here, before any row is read."""
    if len(table.columns) > SHEET_MAX_COLUMNS:
        raise _sheet_limit(fmt, f"{len(table.columns)} columns", f"{SHEET_MAX_COLUMNS} columns")

    def rows() -> Iterator[list[Any]]:
        for n, row in enumerate(table.rows, start=1 + options.header):
            if n > SHEET_MAX_ROWS:
                raise _sheet_limit(
                    fmt, f"more than {SHEET_MAX_ROWS} rows", f"{SHEET_MAX_ROWS} rows"
                )
            yield row

    return rows()


def _sheet_limit(fmt: str, has: str, most: str) -> PermanentError:
    return PermanentError(
        f"The table has {has}; an {fmt} sheet holds at most {most}", code="ENGINE_LIMIT"
    )


_ODS_HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0"'
    ' xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0"'
    ' xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.2">'
    "<office:body><office:spreadsheet>"
)
_ODS_MANIFEST = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0"'
    ' manifest:version="1.2">'
    f'<manifest:file-entry manifest:full-path="/" manifest:media-type="{ODS_MIME}"/>'
    '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/>'
    "</manifest:manifest>"
)


def _ods_cell(value: Any) -> str:
    if value is None:
        return "<table:table-cell/>"
    if isinstance(value, bool):
        flag = "true" if value else "false"
        return (
            f'<table:table-cell office:value-type="boolean" office:boolean-value="{flag}">'
            f"<text:p>{flag.upper()}</text:p></table:table-cell>"
        )
    if isinstance(value, int | float) and value == value and abs(value) != float("inf"):
        return (
            f'<table:table-cell office:value-type="float" office:value="{value!r}">'
            f"<text:p>{value!r}</text:p></table:table-cell>"
        )
    if isinstance(value, dt.datetime | dt.date) and not (
        isinstance(value, dt.datetime) and value.tzinfo is not None
    ):
        return (
            f'<table:table-cell office:value-type="date" office:date-value="{value.isoformat()}">'
            f"<text:p>{value.isoformat()}</text:p></table:table-cell>"
        )
    return (
        '<table:table-cell office:value-type="string">'
        f"<text:p>{_xml_text(value)}</text:p></table:table-cell>"
    )


def _ods_row(values: Iterable[Any]) -> str:
    return "<table:table-row>" + "".join(_ods_cell(v) for v in values) + "</table:table-row>\n"


def _write_ods(table: Table, dst: Path, options: DataOptions) -> None:
    rows = _sheet_rows(table, options, "ods")
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as z:
        # The mimetype comes first and uncompressed: that is how readers recognise ODF.
        z.writestr(zipfile.ZipInfo("mimetype"), ODS_MIME, compress_type=zipfile.ZIP_STORED)
        z.writestr("META-INF/manifest.xml", _ODS_MANIFEST)
        with z.open("content.xml", "w", force_zip64=True) as raw:
            out = io.TextIOWrapper(raw, encoding="utf-8")
            out.write(_ODS_HEAD)
            out.write(f"<table:table table:name={quoteattr(options.sheet or 'Sheet1')}>")
            if options.header:
                out.write(_ods_row(table.columns))
            for row in rows:
                out.write(_ods_row(row))
            out.write("</table:table></office:spreadsheet></office:body>")
            out.write("</office:document-content>")
            out.flush()
            out.detach()


def _arrow_column(pyarrow: Any, values: list[Any]) -> Any:
    """One typed column; a column mixing types (or holding odd values) becomes text."""
    try:
        return pyarrow.array(values)
    except (pyarrow.ArrowException, TypeError, ValueError, OverflowError):
        return pyarrow.array([None if v is None else _text(v) for v in values], pyarrow.string())


def _write_parquet(table: Table, dst: Path, options: DataOptions) -> None:
    pyarrow, _, _ = _libs()
    columns: list[list[Any]] = [[] for _ in table.columns]
    for row in table.rows:
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    arrays = [_arrow_column(pyarrow, c) for c in columns]
    pyarrow.parquet.write_table(pyarrow.table(arrays, names=table.columns), str(dst))


READERS: dict[str, Callable[[Path, DataOptions], Table]] = {
    "csv": _read_csv,
    "tsv": _read_tsv,
    "json": _read_json,
    "jsonl": _read_jsonl,
    "yaml": _read_yaml,
    "xml": _read_xml,
    "xlsx": _read_sheet,
    "ods": _read_sheet,
    "parquet": _read_parquet,
}
WRITERS: dict[str, Callable[[Table, Path, DataOptions], None]] = {
    "csv": _write_csv,
    "tsv": _write_tsv,
    "json": _write_json,
    "jsonl": _write_jsonl,
    "yaml": _write_yaml,
    "xml": _write_xml,
    "xlsx": _write_xlsx,
    "ods": _write_ods,
    "parquet": _write_parquet,
    "txt": _write_txt,
}
