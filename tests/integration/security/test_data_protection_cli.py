"""`appliance master-key add|rewrap|status` and `appliance users export|erase` as an operator
runs them, on the real database and local storage."""

from __future__ import annotations

import json
import uuid
import zipfile

import psycopg
import pytest

from appliance.cli import main
from appliance.settings import Settings
from appliance.storage import make_storage


@pytest.fixture
def cli(postgres_url, redis_url, data_dir, monkeypatch, capsys):
    monkeypatch.setenv("APPLIANCE_DATABASE_URL", postgres_url)
    monkeypatch.setenv("APPLIANCE_REDIS_URL", redis_url)
    monkeypatch.setenv("APPLIANCE_DATA_DIR", str(data_dir))

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_a_master_key_rotation_adds_a_key_moves_every_data_key_and_says_where_they_are(cli):
    code, out, _ = cli("users", "create", "rot@example.test")
    assert code == 0
    storage = make_storage(Settings.from_env())
    storage.sealer(uuid.UUID(out.strip()))  # the user's first file makes their data key
    code, out, _ = cli("master-key", "status")
    [(old, n)] = [line.split("\t") for line in out.strip().splitlines()]
    assert n == "1 data keys (current)"
    code, out, _ = cli("master-key", "add")
    assert code == 0 and "rewrap" in out
    code, out, _ = cli("master-key", "status")
    status = dict(line.split("\t") for line in out.strip().splitlines())
    new = next(k for k in status if k != old)
    assert status == {old: "1 data keys", new: "0 data keys (current)"}
    assert cli("master-key", "rewrap")[1].startswith("1 data keys re-wrapped")
    code, out, _ = cli("master-key", "status")
    assert dict(line.split("\t") for line in out.strip().splitlines()) == {
        old: "0 data keys",
        new: "1 data keys (current)",
    }


def test_adding_a_master_key_is_refused_when_they_come_from_the_environment(cli, monkeypatch):
    monkeypatch.setenv("APPLIANCE_MASTER_KEYS", "k1:" + "A" * 43)
    code, _, err = cli("master-key", "add")
    assert code == 2 and "APPLIANCE_MASTER_KEYS" in err


def test_a_user_is_exported_then_erased_and_is_gone(cli, tmp_path, postgres_url):
    cli("keys", "create", "--user", "gone@example.test")
    archive = tmp_path / "gone.zip"
    code, out, _ = cli("users", "export", "gone@example.test", "--out", str(archive))
    assert code == 0 and "0 jobs" in out
    assert archive.stat().st_mode & 0o777 == 0o600  # all about one person
    with zipfile.ZipFile(archive) as zf:
        doc = json.loads(zf.read("user.json"))
    assert doc["account"]["email"] == "gone@example.test" and len(doc["api_keys"]) == 1
    user_id = doc["account"]["id"]
    assert [a["event"] for a in doc["audit"]] == ["user.created", "key.created"]
    code, out, _ = cli("users", "erase", "gone@example.test")
    assert code == 0 and out.startswith("erased user")
    with psycopg.connect(postgres_url) as conn:
        conn.execute("SELECT appliance_audit_seal(100000)")  # as the reconciler does
        log = conn.execute("SELECT event, user_id, subject, details FROM audit_log").fetchall()
    assert not any("gone@example.test" in str(r) for r in log)  # the log holds no e-mail
    about = [(e, s) for e, u, s, _ in log if str(u) == user_id]
    assert about[-2:] == [("user.exported", f"user:{user_id}"), ("user.erased", f"user:{user_id}")]
    code, _, err = cli("users", "export", "gone@example.test")
    assert code == 2 and "no user gone@example.test" in err
