"""Fleet secrets stay on the operator's machine: made once, private, overridable by env."""

from __future__ import annotations

import json
import stat

from fleet.secrets import NAMES, load_or_create


def test_secrets_are_generated_once_into_a_private_file(tmp_path):
    first = load_or_create("lab", tmp_path / "s")
    assert set(first) == set(NAMES)
    assert len(set(first.values())) == len(NAMES)
    path = tmp_path / "s" / "lab.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert load_or_create("lab", tmp_path / "s") == first


def test_a_new_secret_name_is_added_without_changing_the_others(tmp_path):
    (tmp_path / "lab.json").write_text(json.dumps({"db_password": "kept"}))
    (tmp_path / "lab.json").chmod(0o644)
    values = load_or_create("lab", tmp_path)
    assert values["db_password"] == "kept"
    assert set(values) == set(NAMES)
    assert stat.S_IMODE((tmp_path / "lab.json").stat().st_mode) == 0o600


def test_the_environment_wins_and_is_not_written_down(tmp_path, monkeypatch):
    monkeypatch.setenv("APPLIANCE_DEPLOY_REDIS_API_PASSWORD", "from-env")
    assert load_or_create("lab", tmp_path)["redis_api_password"] == "from-env"
    assert json.loads((tmp_path / "lab.json").read_text())["redis_api_password"] != "from-env"
