"""Every imported file is scanned by a real clamd before any engine sees it (upload, base64,
url, s3), on both storage backends; an infected one fails its task with VIRUS_FOUND, is
deleted and audited; while clamd is down, imports wait and nothing is converted unscanned."""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from appliance.conversions.files import owned_digest, owner
from appliance.metrics import CONVERSIONS, VIRUS_SCANS
from appliance.security import streams
from appliance.settings import Settings
from appliance.storage import object_key
from tests.harness.clamd import EICAR, EICAR_SIGNATURE, MARKER, MARKER_SIGNATURE
from tests.harness.origin import Reply, serve
from tests.integration.jobs.conftest import UPLOAD_CONVERT_EXPORT, JobSystem, task


@pytest.fixture
def scan_tweaks() -> dict[str, Any]:
    return {}


@pytest.fixture
def settings(settings: Settings, clamd, scan_tweaks: dict[str, Any]) -> Settings:
    """The conftest's settings (both backends) with scanning on, on the test's clamd."""
    scanning = {
        "virus_scan": "clamd",
        "clamd_socket": clamd.address,
        "clamd_wait_seconds": 5.0,
        "allow_private_urls": True,
    }
    return msgspec.structs.replace(settings, **(scanning | scan_tweaks))


@pytest.fixture
def eicar_file(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"  # named as an image: the name decides nothing
    path.write_bytes(EICAR)
    return path


@pytest.fixture
def marked_png(png_file: Path, tmp_path: Path) -> Path:
    """A valid PNG carrying the test signature's marker after its end."""
    path = tmp_path / "marked.png"
    path.write_bytes(png_file.read_bytes() + MARKER)
    return path


@pytest.fixture
def web(tmp_path: Path) -> Iterator[dict[str, bytes]]:
    """A loopback HTTP server serving {path: bytes}; yields that dict and its base URL."""
    files: dict[str, bytes] = {}
    with serve(lambda path: Reply(200, files[path]) if path in files else Reply(404)) as origin:
        files["base"] = origin.url("").encode()
        yield files


def stored(system: JobSystem, data: bytes) -> bool:
    """Whether the user's copy of ``data`` is in storage."""
    sha = owned_digest(hashlib.sha256(data).hexdigest(), owner(system.settings, system.user_id))
    return system.rt.storage.exists(object_key(sha))


def stored_bytes(system: JobSystem, data: bytes) -> bytes:
    """The stored object of the user's copy of ``data``, as the backend holds it."""
    sha = owned_digest(hashlib.sha256(data).hexdigest(), owner(system.settings, system.user_id))
    return b"".join(system.rt.storage.backend.iter_bytes(object_key(sha)))


def infected_audit(system: JobSystem) -> list[dict[str, Any]]:
    system.sql("SELECT appliance_audit_seal(100000)")  # as the reconciler does
    return system.sql(
        "SELECT user_id, actor, subject, details FROM audit_log WHERE event = 'file.infected'"
    )


def conversions() -> float:
    return sum(m.samples[0].value for m in CONVERSIONS.collect() if m.samples) or 0.0


def assert_refused(system: JobSystem, job: dict[str, Any], importer: str, signature: str) -> None:
    done = system.wait(job["id"])
    assert done["status"] == "error"
    imported, converted = task(done, importer), task(done, "c")
    assert imported["status"] == "error" and imported["code"] == "VIRUS_FOUND", imported
    assert signature in imported["message"]
    assert converted["status"] == "error"
    (audited,) = infected_audit(system)
    assert audited["user_id"] == system.user_id
    assert audited["subject"] == f"task:{imported['id']}"
    assert signature in audited["details"] and audited["actor"] == "worker"


def test_an_infected_upload_fails_with_virus_found_and_is_deleted(system, eicar_file):
    engines_before = conversions()
    job = system.create(UPLOAD_CONVERT_EXPORT)
    answer = system.upload(task(job, "up")["id"], eicar_file)
    assert answer["status"] in ("waiting", "processing")  # it ends once scanned
    assert_refused(system, job, "up", EICAR_SIGNATURE)
    assert not stored(system, EICAR)
    assert system.sql("SELECT * FROM files_to_scan") == []
    assert conversions() == engines_before  # no engine saw it


def test_a_clean_upload_is_scanned_then_converted(system, png_file):
    clean_before = VIRUS_SCANS.labels("clean")._value.get()
    job = system.create(UPLOAD_CONVERT_EXPORT)
    system.upload(task(job, "up")["id"], png_file)
    done = system.wait(job["id"])
    assert done["status"] == "finished", done
    assert task(done, "up")["result"]["files"][0]["filename"] == png_file.name
    assert VIRUS_SCANS.labels("clean")._value.get() == clean_before + 1
    assert infected_audit(system) == []


def test_a_second_upload_to_a_task_waiting_for_its_scan_is_refused(system, png_file):
    system.stop_worker()  # the first upload stays unscanned
    job = system.create(UPLOAD_CONVERT_EXPORT)
    system.upload(task(job, "up")["id"], png_file)
    with pytest.raises(Exception, match="already has a file"):
        system.upload(task(job, "up")["id"], png_file)


def test_an_infected_base64_import_fails_with_virus_found(system):
    job = system.create(
        {
            "b": {
                "operation": "import/base64",
                "file": base64.b64encode(EICAR).decode(),
                "filename": "doc.txt",
            },
            "c": {"operation": "convert", "input": "b", "output_format": "pdf"},
        }
    )
    assert_refused(system, job, "b", EICAR_SIGNATURE)
    assert not stored(system, EICAR)


def test_a_clean_base64_import_is_converted(system, png_file):
    job = system.create(
        {
            "b": {
                "operation": "import/base64",
                "file": base64.b64encode(png_file.read_bytes()).decode(),
                "filename": "p.png",
            },
            "c": {"operation": "convert", "input": "b", "output_format": "gif"},
        }
    )
    assert system.wait(job["id"])["status"] == "finished"


def test_an_infected_url_import_is_never_stored(system, web, marked_png):
    web["/marked.png"] = marked_png.read_bytes()
    url = web["base"].decode() + "/marked.png"
    job = system.create(
        {
            "u": {"operation": "import/url", "url": url},
            "c": {"operation": "convert", "input": "u", "output_format": "gif"},
        }
    )
    assert_refused(system, job, "u", MARKER_SIGNATURE)
    assert not stored(system, marked_png.read_bytes())


def test_an_infected_s3_import_is_never_stored(system, s3_server, marked_png):
    client, src, _ = s3_server.source_and_destination()
    client.fput_object(src, "in/marked.png", str(marked_png))
    job = system.create(
        {
            "s": {"operation": "import/s3", **s3_server.task_fields(src, key="in/marked.png")},
            "c": {"operation": "convert", "input": "s", "output_format": "gif"},
        }
    )
    assert_refused(system, job, "s", MARKER_SIGNATURE)
    assert not stored(system, marked_png.read_bytes())


@pytest.mark.parametrize("scan_tweaks", [{"clamd_wait_seconds": 0.3, "task_max_attempts": 20}])
def test_an_upload_waits_while_clamd_is_down_and_converts_once_it_is_back(system, clamd, png_file):
    clamd.stop()
    job = system.create(UPLOAD_CONVERT_EXPORT)
    system.upload(task(job, "up")["id"], png_file)
    time.sleep(2.0)  # several attempts meet no clamd
    waiting = system.job(job["id"])
    assert task(waiting, "up")["status"] in ("waiting", "processing")
    assert task(waiting, "c")["status"] == "waiting"  # never converted unscanned
    clamd.start()
    assert system.wait(job["id"], timeout=60)["status"] == "finished"


@pytest.mark.parametrize("scan_tweaks", [{"clamd_wait_seconds": 0.2, "task_max_attempts": 2}])
def test_an_import_fails_closed_when_clamd_stays_down(system, clamd, png_file):
    clamd.stop()
    job = system.create(UPLOAD_CONVERT_EXPORT)
    system.upload(task(job, "up")["id"], png_file)
    done = system.wait(job["id"])
    assert task(done, "up")["code"] == "SCANNER_UNAVAILABLE"
    assert task(done, "c")["status"] == "error"


SEALED = {"encrypt_at_rest": True}


@pytest.mark.parametrize("scan_tweaks", [SEALED])
def test_with_encryption_on_a_url_import_is_scanned_opened_though_its_spool_is_sealed(
    system, web, png_file
):
    web["/clean.png"] = png_file.read_bytes()
    web["/eicar.png"] = EICAR
    base = web["base"].decode()
    clean = system.create({"u": {"operation": "import/url", "url": base + "/clean.png"}})
    assert system.wait(clean["id"])["status"] == "finished"
    kept = stored_bytes(system, png_file.read_bytes())
    assert kept.startswith(streams.MAGIC) and png_file.read_bytes()[64:128] not in kept
    job = system.create(
        {
            "u": {"operation": "import/url", "url": base + "/eicar.png"},
            "c": {"operation": "convert", "input": "u", "output_format": "gif"},
        }
    )
    assert_refused(system, job, "u", EICAR_SIGNATURE)  # clamd saw the plain bytes
    assert not stored(system, EICAR)
    assert not list((system.settings.data_path / "tmp").glob("spool-*"))


@pytest.mark.parametrize("scan_tweaks", [SEALED])
def test_with_encryption_on_an_upload_stored_sealed_is_scanned_opened(system, eicar_file):
    system.stop_worker()  # the upload waits, stored, for its scan
    job = system.create(UPLOAD_CONVERT_EXPORT)
    system.upload(task(job, "up")["id"], eicar_file)
    held = stored_bytes(system, EICAR)
    assert held.startswith(streams.MAGIC) and EICAR not in held
    system.start_worker()
    assert_refused(system, job, "up", EICAR_SIGNATURE)
    assert not stored(system, EICAR)
