import pytest

from appliance.settings import Settings, SettingsError


def test_defaults_need_no_configuration():
    s = Settings.from_env({})
    assert s.port == 8080 and s.host == "127.0.0.1"
    assert s.storage == "local"
    assert s.max_upload_bytes == 100 * 1024 * 1024
    assert s.effective_public_url == "http://127.0.0.1:8080"


def test_values_are_converted_from_strings():
    s = Settings.from_env(
        {
            "APPLIANCE_PORT": "9000",
            "APPLIANCE_ALLOW_PRIVATE_URLS": "true",
            "APPLIANCE_SYNC_TIMEOUT_SECONDS": "2.5",
        }
    )
    assert (s.port, s.allow_private_urls, s.sync_timeout_seconds) == (9000, True, 2.5)


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("APPLIANCE_PORT", "eighty"),
        ("APPLIANCE_PORT", "70000"),
        ("APPLIANCE_STORAGE", "ftp"),
        ("APPLIANCE_MAX_UPLOAD_BYTES", "0"),
        ("APPLIANCE_SYNC_PREFIX", "no-slash"),
        ("APPLIANCE_DATABASE_URL", "mysql://x"),
        ("APPLIANCE_DATABASE_READ_URL", "mysql://x"),
        ("APPLIANCE_SERVICE_USER", "root"),
        ("APPLIANCE_SERVICE_USER", "a b"),
        ("APPLIANCE_MASTER_KEYS", "k1:c2hvcnQ"),  # 5 bytes, not 32
        ("APPLIANCE_MASTER_KEYS", "no-id-" + "A" * 43),
        ("APPLIANCE_MASTER_KEYS", "k1:" + "A" * 43 + ",k2:!!"),
    ],
)
def test_invalid_value_error_names_the_variable(var, value):
    with pytest.raises(SettingsError, match=var):
        Settings.from_env({var: value})


def test_master_keys_of_32_bytes_each_are_taken():
    keys = "k1:" + "A" * 43 + ", k2:" + "B" * 43
    assert Settings.from_env({"APPLIANCE_MASTER_KEYS": keys}).master_keys == keys


def test_s3_storage_requires_its_credentials():
    with pytest.raises(SettingsError, match="APPLIANCE_S3_ENDPOINT"):
        Settings.from_env({"APPLIANCE_STORAGE": "s3"})


def test_every_setting_is_documented():
    ref = Settings.reference()
    assert len(ref) > 20
    assert all(var.startswith("APPLIANCE_") and text for var, _, text in ref)


def test_signing_key_is_created_once_and_kept(tmp_path):
    s = Settings.from_env({"APPLIANCE_DATA_DIR": str(tmp_path)})
    first = s.signing_key()
    assert len(first) > 40 and s.signing_key() == first
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600


def test_readme_documents_every_setting():
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    missing = [var for var, _, _ in Settings.reference() if f"`{var}`" not in readme]
    assert missing == []


def test_cli_reports_an_unreachable_database_clearly(monkeypatch, capsys):
    from appliance.cli import main

    monkeypatch.setenv("APPLIANCE_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    assert main(["keys", "create", "--user", "a@example.test"]) == 1
    err = capsys.readouterr().err
    assert "cannot reach PostgreSQL" in err and "127.0.0.1:1" in err


def test_cli_reports_a_bad_setting_naming_the_variable(monkeypatch, capsys):
    from appliance.cli import main

    monkeypatch.setenv("APPLIANCE_PORT", "http")
    assert main(["migrate"]) == 2
    assert "APPLIANCE_PORT" in capsys.readouterr().err


def test_cli_refuses_unknown_scopes_before_touching_the_database(monkeypatch, capsys):
    from appliance.cli import main

    monkeypatch.setattr("psycopg.connect", _fake_connect)
    assert main(["keys", "create", "--user", "a@example.test", "--scopes", "task.read,root"]) == 2
    assert "unknown scopes ['root']" in capsys.readouterr().err


class _FakeConn:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _fake_connect(*args, **kwargs):
    return _FakeConn()
