"""import/s3 and export/s3 without a server: their checks at job creation, the export's keys
and its stream from storage (the size limit holds while it streams)."""

import pytest

from appliance.conversions import graph
from appliance.conversions.operations.export_s3 import ExportFields, Stream, keys_for
from appliance.conversions.remote_s3 import Location, endpoint_of
from appliance.conversions.task import InputFile
from appliance.engines.enabled import enabled_engines
from appliance.engines.registry import Registry
from appliance.errors import FileTooLarge, InvalidData

REGISTRY = Registry(enabled_engines())
CREDS = {"access_key_id": "AK", "secret_access_key": "SK"}
IMPORT = {"operation": "import/s3", "bucket": "b", "region": "us-east-1", **CREDS}


def errors_of(tasks):
    with pytest.raises(InvalidData) as info:
        graph.plan(tasks, REGISTRY)
    return info.value.errors


def test_an_import_by_key_knows_its_format_by_the_key_or_the_filename():
    [by_key] = graph.plan({"in": {**IMPORT, "key": "a/photo.PNG"}}, REGISTRY)
    [named] = graph.plan({"in": {**IMPORT, "key": "a/x", "filename": "x.jpg"}}, REGISTRY)
    [prefix] = graph.plan({"in": {**IMPORT, "key_prefix": "a/"}}, REGISTRY)
    assert (by_key.output_format, named.output_format, prefix.output_format) == ("png", "jpg", None)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({}, "tasks.in.key"),  # neither key nor key_prefix
        ({"key": "a", "key_prefix": "b/"}, "tasks.in.key"),
        ({"key": "a", "endpoint": "ftp://s3.example.com"}, "tasks.in.endpoint"),
        ({"key": "a", "endpoint": "https://s3.example.com/some/path"}, "tasks.in.endpoint"),
        ({"key": "a", "endpoint": "https://[::1"}, "tasks.in.endpoint"),
        ({"key": 7}, "tasks.in.key"),
        ({"key": "a", "secret_access_key": ["x"]}, "tasks.in.secret_access_key"),
    ],
)
def test_a_bad_import_is_refused_naming_the_field(fields, field):
    assert field in errors_of({"in": {**IMPORT, **fields}})


def test_required_fields_are_named():
    errors = errors_of({"in": {"operation": "import/s3", "key": "a"}})
    assert {"tasks.in.bucket", "tasks.in.region", "tasks.in.secret_access_key"} <= set(errors)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"acl": "everyone"}, "tasks.out.acl"),
        ({"metadata": {"x-amz-acl\r\nX-Other": "v"}}, "tasks.out.metadata"),
        ({"metadata": {"k": "line\nbreak"}}, "tasks.out.metadata"),
        ({"cache_control": "max-age=1\r\nX-Injected: 1"}, "tasks.out.cache_control"),
        ({"server_side_encryption": "rot13"}, "tasks.out.server_side_encryption"),
        ({"tagging": {"k": 1}}, "tasks.out.tagging"),
    ],
)
def test_a_bad_export_is_refused_naming_the_field(fields, field):
    tasks = {
        "in": {**IMPORT, "key": "a.png"},
        "out": {**IMPORT, "operation": "export/s3", "input": "in", **fields},
    }
    assert any(key.startswith(field) for key in errors_of(tasks))  # tagging[...]: its values


def test_endpoints_are_urls_and_default_to_amazon():
    def endpoint(value):
        return endpoint_of(Location(bucket="b", region="r", endpoint=value))

    assert endpoint(None) == ("s3.amazonaws.com", True)
    assert endpoint("http://minio.internal:9000") == ("minio.internal:9000", False)
    assert endpoint("nyc3.digitaloceanspaces.com") == ("nyc3.digitaloceanspaces.com", True)
    assert endpoint("https://user:pw@example.com") is None


FILES = [InputFile("0" * 64, name, 1) for name in ("a.pdf", "b.pdf", "c.pdf")]


@pytest.mark.parametrize(
    ("fields", "count", "keys"),
    [
        ({"key": "out/doc.pdf"}, 1, ["out/doc.pdf"]),
        ({"key": "page-%d.pdf"}, 3, ["page-1.pdf", "page-2.pdf", "page-3.pdf"]),
        ({"key": "p%03d.pdf"}, 2, ["p001.pdf", "p002.pdf"]),
        ({"key": "doc.pdf"}, 2, ["doc-1.pdf", "doc-2.pdf"]),
        ({"key_prefix": "jobs/1/"}, 2, ["jobs/1/a.pdf", "jobs/1/b.pdf"]),
        ({}, 1, ["a.pdf"]),
    ],
)
def test_export_keys(fields, count, keys):
    f = ExportFields(bucket="b", region="r", **fields)
    assert keys_for(f, FILES[:count]) == keys


def test_the_stream_gives_what_storage_holds_and_stops_at_the_limit():
    pulled = []

    def chunks(n, size):
        for i in range(n):
            pulled.append(i)
            yield bytes([i]) * size

    stream = Stream(chunks(3, 10), limit=30)
    assert b"".join(iter(lambda: stream.read(4), b"")) == b"".join(
        bytes([i]) * 10 for i in range(3)
    )
    pulled.clear()
    stream = Stream(chunks(1000, 10), limit=25)
    with pytest.raises(FileTooLarge):
        while stream.read(100):
            pass
    assert len(pulled) == 3  # stopped at the first chunk past the limit, not at the end
