"""Where the single host's own Postgres and Redis are reached, and their credentials."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from appliance import embedded
from appliance.settings import Settings


def test_credentials_are_made_once_private_and_kept(tmp_path):
    first = embedded.credentials(tmp_path)
    assert len(first.postgres) > 30 and len(first.redis) > 30 and first.postgres != first.redis
    assert embedded.credentials(tmp_path) == first
    folder = tmp_path / "credentials"
    assert folder.stat().st_mode & 0o777 == 0o700
    for name in ("postgres", "redis", "pgpass"):
        assert (folder / name).stat().st_mode & 0o777 == 0o600
    assert (folder / "pgpass").read_text() == f"*:*:appliance:appliance_app:{first.postgres}\n"


def test_the_database_url_names_the_socket_and_the_password_file_not_the_password(tmp_path):
    secrets = embedded.credentials(tmp_path)
    url = Settings.from_env({"APPLIANCE_DATA_DIR": str(tmp_path)}).effective_database_url
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    assert parts.username == "appliance_app" and secrets.postgres not in url
    assert query["host"] == [str(tmp_path / "run")] and query["port"] == ["54329"]
    assert query["passfile"] == [str(tmp_path / "credentials" / "pgpass")]


def test_the_redis_url_carries_the_password_to_the_socket(tmp_path):
    secrets = embedded.credentials(tmp_path)
    url = Settings.from_env({"APPLIANCE_DATA_DIR": str(tmp_path)}).effective_redis_url
    assert url == f"unix://{tmp_path}/run/redis.sock?db=0&password={secrets.redis}"


def test_a_data_dir_too_long_for_a_socket_falls_back_to_loopback_tcp(tmp_path):
    deep = Path(tmp_path, *(["d" * 30] * 4))
    assert embedded.socket_dir(deep) is None
    secrets = embedded.credentials(deep)
    assert "host=127.0.0.1&port=54329" in embedded.database_url(deep)
    assert embedded.redis_url(deep) == f"redis://:{secrets.redis}@127.0.0.1:56379/0"
