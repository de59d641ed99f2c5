"""GDPR on the real job system (Postgres, Redis, Dramatiq, libvips, local disk or Swift+s3api,
encryption at rest on and off): a user's export holds everything about them with their files
opened; erasing them leaves no byte of their files nor their e-mail address readable anywhere
in storage or the database, and a copy of their objects taken before cannot be opened."""

from __future__ import annotations

import base64
import json
import os
import uuid
import zipfile
from pathlib import Path

import msgspec
import psycopg
import pytest
import pyvips

from appliance.conversions import personal
from appliance.conversions.webhooks import WebhookService
from appliance.security import streams
from appliance.security.accounts import AccountError, invite
from appliance.security.envelope import KeyDestroyed
from appliance.security.sealing import Columns
from appliance.storage import make_storage, object_key
from tests.integration.jobs.conftest import JobSystem, task


@pytest.fixture(params=[True, False], ids=["sealed", "plain"])
def sealing(request) -> bool:
    return request.param


@pytest.fixture
def settings(settings, sealing):
    return msgspec.structs.replace(settings, encrypt_at_rest=sealing, allow_private_urls=True)


def unique_png(path: Path) -> bytes:
    """A picture no other test stores (random noise)."""
    pyvips.Image.gaussnoise(160, 120, mean=128, sigma=50).cast("uchar").write_to_file(str(path))
    return path.read_bytes()


def make_history(system: JobSystem, tmp_path: Path) -> dict[str, bytes]:
    """A finished upload -> convert -> export job, an import/base64 job and a webhook."""
    png = tmp_path / "photo.png"
    uploaded = unique_png(png)
    words = f"the user's own words {uuid.uuid4().hex} ".encode() * 200
    job = system.create(
        {
            "up": {"operation": "import/upload"},
            "c": {"operation": "convert", "input": "up", "output_format": "webp", "width": 80},
            "e": {"operation": "export/url", "input": "c"},
        },
        tag="mine",
    )
    system.upload(task(job, "up")["id"], png)
    assert system.wait(job["id"])["status"] == "finished"
    text = system.create(
        {
            "t": {
                "operation": "import/base64",
                "filename": "notes.txt",
                "file": base64.b64encode(words).decode(),
            }
        }
    )
    assert system.wait(text["id"])["status"] == "finished"
    hooks = WebhookService(system.settings, system.svc.pool, Columns(system.rt.storage.keyring))
    system.call(hooks.create(system.user_id, "http://127.0.0.1:9/hook", ["job.finished"]))
    [out] = system.sql(
        "SELECT sha256 FROM task_files WHERE task_id = %s", task(system.job(job["id"]), "c")["id"]
    )
    made = b"".join(system.rt.storage.iter_bytes(object_key(out["sha256"])))
    invite(system.settings, email_of(system))  # to the web UI: a row that names the e-mail
    return {"uploaded": uploaded, "converted": made, "text": words}


def email_of(system: JobSystem) -> str:
    return system.sql("SELECT email FROM users WHERE id = %s", system.user_id)[0]["email"]


def test_the_export_holds_the_account_keys_jobs_tasks_usage_and_the_opened_files(system, tmp_path):
    files = make_history(system, tmp_path)
    email = email_of(system)
    out = tmp_path / "export.zip"
    personal.export(system.settings, make_storage(system.settings), email, out)
    with zipfile.ZipFile(out) as zf:
        doc = json.loads(zf.read("user.json"))
        stored = {e["path"]: zf.read(e["path"]) for e in doc["files"]}
    assert doc["format"] == personal.EXPORT_FORMAT
    assert doc["account"]["email"] == email and doc["account"]["id"] == str(system.user_id)
    assert [k["prefix"] for k in doc["api_keys"]] and "key_hash" not in doc["api_keys"][0]
    assert len(doc["data_keys"]) == 1  # secret columns are sealed with it even when files are not
    assert "wrapped" not in str(doc["data_keys"])
    assert {j["tag"] for j in doc["jobs"]} == {"mine", None}
    assert {t["operation"] for t in doc["tasks"]} >= {"import/upload", "convert", "export/url"}
    assert doc["usage"][0]["jobs_created"] == 2
    assert doc["webhooks"][0]["url"] == "http://127.0.0.1:9/hook"
    assert "signing_secret" not in doc["webhooks"][0]
    assert {"job.created", "webhook.created"} <= {a["event"] for a in doc["audit"]}
    [invited] = doc["invitations"]  # never its token (only a hash is kept)
    assert set(invited) == {"operator", "created_at", "expires_at", "used_at"}
    by_name = {Path(p).name: data for p, data in stored.items()}
    assert by_name["photo.png"] == files["uploaded"]
    assert by_name["photo.webp"] == files["converted"]
    assert by_name["notes.txt"] == files["text"]


def test_an_erased_user_leaves_nothing_readable_in_storage_or_the_database(
    system, tmp_path, request
):
    files = make_history(system, tmp_path)
    email = email_of(system)
    addresses = [r["sha256"] for r in system.sql("SELECT sha256 FROM task_files")]
    backup = {a: b"".join(system.rt.storage.backend.iter_bytes(object_key(a))) for a in addresses}
    assert system.sql("SELECT count(*) AS n FROM conversion_cache")[0]["n"] == 1
    system.stop_worker()

    erased = personal.erase(system.settings, system.rt.storage, email)

    assert erased.user_id == system.user_id and erased.objects_deleted == len(set(addresses))
    assert not any(system.rt.storage.exists(object_key(a)) for a in addresses)
    needles = [email.encode(), *(piece for data in files.values() for piece in samples(data))]
    for where, blob in everything_stored(system, request):
        found = [n[:24] for n in needles if n in blob]
        assert not found, f"{where} still holds {found}"
    dump = database_text(system)
    assert email not in dump and files["text"][:40].decode() not in dump
    assert system.sql("SELECT count(*) AS n FROM conversion_cache")[0]["n"] == 0
    assert system.sql("SELECT count(*) AS n FROM data_keys")[0]["n"] == 0
    system.sql("SELECT appliance_audit_seal(100000)")  # as the reconciler does
    [erasure] = system.sql("SELECT user_id, subject FROM audit_log WHERE event = 'user.erased'")
    assert erasure == {"user_id": system.user_id, "subject": f"user:{system.user_id}"}
    if system.settings.encrypt_at_rest:  # a copy taken before (a backup) no longer opens
        fresh = make_storage(system.settings)
        for address, sealed in backup.items():
            assert sealed.startswith(streams.MAGIC)
            system.rt.storage.backend.put_path(object_key(address), write(tmp_path, sealed))
            with pytest.raises(KeyDestroyed):
                b"".join(fresh.iter_bytes(object_key(address)))
    with pytest.raises(AccountError):
        personal.erase(system.settings, system.rt.storage, email)


def samples(data: bytes, n: int = 6, width: int = 32) -> list[bytes]:
    """``n`` runs of ``width`` bytes from the middle of ``data`` (its first and last fifths
    hold a format's headers and metadata, which other users' files share): any of them
    found is a leak."""
    start, end = len(data) // 5, len(data) * 4 // 5 - width
    step = max(1, (end - start) // n)
    return [data[i : i + width] for i in range(start, end, step)][:n]


def everything_stored(system: JobSystem, request) -> list[tuple[str, bytes]]:
    """Every file under the data directory (local storage, spools, work directories) and,
    on S3, every object of the bucket and every file the S3 server keeps on its disk."""
    out = [(str(p), p.read_bytes()) for p in system.settings.data_path.rglob("*") if p.is_file()]
    if system.settings.storage == "s3":
        backend = system.rt.storage.backend
        for obj in backend.client.list_objects(backend.bucket, recursive=True):
            out.append((obj.object_name, b"".join(backend.iter_bytes(obj.object_name))))
        srv = request.getfixturevalue("s3_server").workdir / "srv"
        out += [(str(p), p.read_bytes()) for p in srv.rglob("*") if p.is_file()]
    return out


def database_text(system: JobSystem) -> str:
    """Every row of every table of the database, as text."""
    with psycopg.connect(system.settings.effective_database_url, autocommit=True) as conn:
        tables = [
            r[0]
            for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        ]
        return "\n".join(
            str(row[0]) for t in tables for row in conn.execute(f'SELECT t::text FROM "{t}" t')
        )


def write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / f"copy-{os.urandom(4).hex()}"
    path.write_bytes(data)
    return path
