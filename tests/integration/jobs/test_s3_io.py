"""import/s3 and export/s3 against the suite's real S3 server (Swift+s3api) standing in for a
user's S3 service: files in, converted, out to another bucket and read back; the size limit;
refused credentials; the address guard on the endpoint (private addresses, DNS rebinding);
and credentials that never show in a task's JSON nor stay in the database."""

from __future__ import annotations

import io
import json
import os
import socket
import threading
import tracemalloc
import uuid

import msgspec
import pytest
import pyvips

from appliance.security import netguard
from tests.integration.jobs.conftest import task


@pytest.fixture
def remote(s3_server):
    """The user's S3 service: a client, and fresh source and destination buckets."""
    return s3_server.source_and_destination()


def allow_private(system, allowed=True, **more):
    """The worker's settings: the test S3 server is on loopback."""
    system.rt.settings = msgspec.structs.replace(
        system.rt.settings, allow_private_urls=allowed, **more
    )


def put(client, bucket, key, data):
    client.put_object(bucket, key, io.BytesIO(data), len(data))


def get(client, bucket, key):
    response = client.get_object(bucket, key)
    try:
        return response.read()
    finally:
        response.close()
        response.release_conn()


def where(s3_server, bucket, **fields):
    """import/s3 or export/s3 fields for ``bucket`` on the test server."""
    return s3_server.task_fields(bucket, **fields)


def test_a_file_imported_by_key_is_converted_and_exported_to_another_bucket(
    system, remote, s3_server, png_file
):
    client, src, dst = remote
    allow_private(system)
    put(client, src, "in/photo.png", png_file.read_bytes())
    job = system.create(
        {
            "in": {"operation": "import/s3", **where(s3_server, src, key="in/photo.png")},
            "c": {"operation": "convert", "input": "in", "output_format": "webp", "width": 100},
            "out": {"operation": "export/s3", "input": "c", **where(s3_server, dst, key="o.webp")},
        }
    )
    job = system.wait(job["id"])
    assert job["status"] == "finished", job
    assert task(job, "in")["result"]["files"][0]["filename"] == "photo.png"
    assert task(job, "out")["result"]["files"] == [
        {
            "filename": "photo.webp",
            "size": task(job, "c")["result"]["files"][0]["size"],
            "key": "o.webp",
        }
    ]
    data = get(client, dst, "o.webp")
    image = pyvips.Image.new_from_buffer(data, "")
    assert (data[8:12], image.width) == (b"WEBP", 100)
    assert client.stat_object(dst, "o.webp").content_type == "image/webp"


def test_a_key_prefix_imports_every_object_under_it_and_the_export_numbers_them(
    system, remote, s3_server
):
    client, src, dst = remote
    allow_private(system)
    files = {f"batch/{n}.txt": f"file {n}\n".encode() * 1000 for n in (3, 1, 2)}
    for key, data in files.items():
        put(client, src, key, data)
    put(client, src, "batch/", b"")  # a folder marker: no file
    put(client, src, "other.txt", b"not under the prefix")
    job = system.create(
        {
            "in": {"operation": "import/s3", **where(s3_server, src, key_prefix="batch/")},
            "numbered": {
                "operation": "export/s3",
                "input": "in",
                **where(s3_server, dst, key="copy-%02d.txt"),
            },
            "mirrored": {
                "operation": "export/s3",
                "input": "in",
                **where(s3_server, dst, key_prefix="mirror/", metadata={"origin": "test"}),
            },
        }
    )
    job = system.wait(job["id"])
    assert job["status"] == "finished", job
    names = [f["filename"] for f in task(job, "in")["result"]["files"]]
    assert names == ["1.txt", "2.txt", "3.txt"]
    for n in (1, 2, 3):
        assert get(client, dst, f"copy-{n:02d}.txt") == files[f"batch/{n}.txt"]
        assert get(client, dst, f"mirror/{n}.txt") == files[f"batch/{n}.txt"]
    assert client.stat_object(dst, "mirror/1.txt").metadata["x-amz-meta-origin"] == "test"


def test_a_large_file_goes_in_and_out_a_part_at_a_time_never_whole_in_memory(
    system, remote, s3_server
):
    """64 MiB in and out: the most allocated at once is a few parts (local storage ~16 MiB,
    S3 storage ~32 MiB with its 16 MiB parts), not the file."""
    client, src, dst = remote
    allow_private(system)
    size = 64 << 20
    client.put_object(src, "big.bin", io.BytesIO(os.urandom(1 << 20) * 64), size)
    tracemalloc.start()
    try:
        job = system.create(
            {
                "in": {"operation": "import/s3", **where(s3_server, src, key="big.bin")},
                "out": {"operation": "export/s3", "input": "in", **where(s3_server, dst)},
            }
        )
        job = system.wait(job["id"], timeout=120)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert job["status"] == "finished", job
    assert client.stat_object(dst, "big.bin").size == size
    assert peak < 40 << 20


def test_an_object_past_the_size_limit_fails_the_import_while_it_streams(
    system, remote, s3_server, data_dir
):
    client, src, _ = remote
    allow_private(system, max_upload_bytes=200_000)
    put(client, src, "fits.bin", b"f" * 200_000)
    put(client, src, "big.bin", b"b" * 3_000_000)
    fits = system.create(
        {"in": {"operation": "import/s3", **where(s3_server, src, key="fits.bin")}}
    )
    assert system.wait(fits["id"])["status"] == "finished"
    job = system.create({"in": {"operation": "import/s3", **where(s3_server, src, key="big.bin")}})
    job = system.wait(job["id"])
    assert (job["status"], task(job, "in")["code"]) == ("error", "FILE_TOO_LARGE")
    assert not list((data_dir / "tmp").glob("spool-*"))  # the partial download is gone


def test_an_export_past_the_size_limit_is_refused(system, remote, s3_server):
    client, src, dst = remote
    allow_private(system)
    put(client, src, "a.bin", b"a" * 300_000)
    job = system.create({"in": {"operation": "import/s3", **where(s3_server, src, key="a.bin")}})
    imported = task(system.wait(job["id"]), "in")
    allow_private(system, max_upload_bytes=100_000)
    job = system.create(
        {"out": {"operation": "export/s3", "input": imported["id"], **where(s3_server, dst)}}
    )
    job = system.wait(job["id"])
    assert task(job, "out")["code"] == "FILE_TOO_LARGE"
    assert list(client.list_objects(dst)) == []


@pytest.mark.parametrize("operation", ["import/s3", "export/s3"])
def test_refused_credentials_fail_the_task_with_a_clear_error(system, remote, s3_server, operation):
    client, src, _ = remote
    allow_private(system)
    put(client, src, "a.txt", b"hello")
    wrong = where(s3_server, src, key="a.txt", secret_access_key="not-the-secret-0123456789")
    tasks = {"t": {"operation": operation, **wrong}}
    if operation == "export/s3":
        tasks = {"in": {"operation": "import/s3", **where(s3_server, src, key="a.txt")}}
        tasks["t"] = {"operation": operation, "input": "in", **wrong}
    job = system.wait(system.create(tasks)["id"])
    failed = task(job, "t")
    assert (job["status"], failed["code"]) == ("error", "S3_ACCESS_DENIED")
    assert src in failed["message"] and "not-the-secret" not in failed["message"]


def test_a_missing_key_or_an_empty_prefix_is_not_found(system, remote, s3_server):
    _, src, _ = remote
    allow_private(system)
    codes = []
    for where_to in ({"key": "nothing.png"}, {"key_prefix": "none/"}):
        job = system.create({"in": {"operation": "import/s3", **where(s3_server, src, **where_to)}})
        codes.append(task(system.wait(job["id"]), "in")["code"])
    assert codes == ["S3_NOT_FOUND", "S3_NOT_FOUND"]


@pytest.mark.parametrize("operation", ["import/s3", "export/s3"])
def test_a_private_endpoint_is_refused_unless_the_operator_allows_it(
    system, remote, s3_server, operation
):
    client, src, dst = remote
    put(client, src, "a.txt", b"hello")
    allow_private(system)  # the import feeding an export may reach it; the task under test not
    tasks = {"in": {"operation": "import/s3", **where(s3_server, src, key="a.txt")}}
    job = system.wait(system.create(tasks)["id"])
    imported = task(job, "in")["id"]
    allow_private(system, allowed=False)
    fields = where(s3_server, dst if operation == "export/s3" else src, key="a.txt")
    if operation == "export/s3":
        fields["input"] = imported
    job = system.wait(system.create({"t": {"operation": operation, **fields}})["id"])
    assert task(job, "t")["code"] == "URL_NOT_ALLOWED"
    assert list(client.list_objects(dst)) == []


@pytest.fixture
def decoy(s3_server):
    """A server on 127.0.0.2 at the S3 server's port: where a rebound name points. Counts the
    connections it gets."""
    port = int(s3_server.endpoint.rsplit(":", 1)[1])
    listener = socket.create_server(("127.0.0.2", port))
    hits = []

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            hits.append(conn)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield hits
    listener.shutdown(socket.SHUT_RDWR)  # wakes the accept (close alone leaves it bound)
    listener.close()
    thread.join(5)


@pytest.mark.parametrize("field", ["key", "key_prefix"])
def test_an_endpoint_name_that_rebinds_after_its_check_never_reaches_the_new_address(
    system, remote, s3_server, decoy, monkeypatch, field
):
    """rebind.test first resolves to 127.0.0.1 (the S3 server, taken as public here), then to
    127.0.0.2 (taken as private, where the decoy listens). The guard checks the address it
    connects to, so the decoy is never reached: the first request goes to the checked address,
    and a later lookup that answers the private address is refused."""
    client, src, _ = remote
    put(client, src, "in/a.txt", b"hello")
    allow_private(system, allowed=False)
    real_getaddrinfo = socket.getaddrinfo
    lookups = []

    def rebinding(host, port, *args, **kw):
        if host == "rebind.test":
            lookups.append(host)
            host = "127.0.0.1" if len(lookups) == 1 else "127.0.0.2"
        return real_getaddrinfo(host, port, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    monkeypatch.setattr(netguard, "is_public", lambda ip: str(ip) == "127.0.0.1")
    endpoint = s3_server.url.replace("127.0.0.1", "rebind.test")
    value = "in/a.txt" if field == "key" else "in/"
    fields = where(s3_server, src, endpoint=endpoint, **{field: value})
    job = system.wait(system.create({"in": {"operation": "import/s3", **fields}})["id"])
    imported = task(job, "in")
    if field == "key":  # one request: to the address checked
        assert imported["status"] == "finished", imported
    else:  # a listing, then a download whose lookup answered the private address
        assert imported["code"] == "URL_NOT_ALLOWED", imported
    assert lookups and decoy == []


def test_credentials_are_never_in_a_task_json_nor_kept_after_the_task_ends(
    system, remote, s3_server, png_file
):
    client, src, dst = remote
    allow_private(system)
    put(client, src, "photo.png", png_file.read_bytes())
    given = where(s3_server, src, key="photo.png", session_token="the-session-token-42")
    job = system.create(
        {
            "in": {"operation": "import/s3", **given},
            "out": {"operation": "export/s3", "input": "in", **where(s3_server, dst)},
        }
    )
    secrets = (s3_server.secret_key, "the-session-token-42", s3_server.access_key)
    waiting = system.sql("SELECT payload::text AS p FROM tasks WHERE job_id = %s", job["id"])
    assert all(s not in row["p"] for row in waiting for s in secrets)  # sealed, not in clear
    assert all('"_sealed"' in row["p"] for row in waiting)
    answers = [str(job), str(system.wait(job["id"]))]
    assert task(system.job(job["id"]), "out")["status"] == "finished"
    svc, user = system.svc, system.user_id
    answers.append(system.call(svc.get_task(user, uuid.UUID(task(job, "in")["id"]))))
    pages = dict(page=1, per_page=100)
    answers.append(
        system.call(svc.list_tasks(user, status=None, job_id=None, operation=None, **pages))[0]
    )
    answers.append(
        system.call(svc.list_jobs(user, status=None, tag=None, include_tasks=True, **pages))[0]
    )
    assert all(s not in a and "_sealed" not in a for a in answers for s in secrets)
    assert "access_key_id" not in str(task(job, "in")["payload"])
    assert get(client, dst, "photo.png") == png_file.read_bytes()
    assert everywhere_in_the_database(system, (*secrets, '"_sealed"')) == []


def everywhere_in_the_database(system, needles):
    """(table, needle) for every row of every table whose text holds a needle."""
    tables = system.sql(
        "SELECT table_name FROM information_schema.tables"
        " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
    )
    found = []
    for row in tables:
        name = row["table_name"]
        for needle in needles:
            hits = system.sql(
                f'SELECT count(*) AS n FROM "{name}" x WHERE x::text LIKE %s', f"%{needle}%"
            )
            if hits[0]["n"]:
                found.append((name, needle))
    return found


def test_a_retry_of_an_ended_task_has_no_credentials_left_and_says_so(system, remote, s3_server):
    client, src, _ = remote
    allow_private(system)
    put(client, src, "a.txt", b"hello")
    job = system.create({"in": {"operation": "import/s3", **where(s3_server, src, key="a.txt")}})
    ended = task(system.wait(job["id"]), "in")
    retry = json.loads(system.call(system.svc.retry_task(system.user_id, uuid.UUID(ended["id"]))))
    job = system.wait(job["id"])
    retried = task(job, retry["name"])
    assert (retried["status"], retried["code"]) == ("error", "CREDENTIALS_UNAVAILABLE")
