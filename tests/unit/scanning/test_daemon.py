import pytest

from appliance.scanning import daemon
from appliance.supervisor import scanner_commands
from tests.conftest import make_settings


def test_up_refuses_to_start_unscanned_without_signatures(tmp_path):
    empty = tmp_path / "clamav"
    empty.mkdir()
    settings = make_settings({"virus_scan": "clamd", "clamd_database_dir": str(empty)})
    with pytest.raises(RuntimeError, match=r"APPLIANCE_CLAMD_DATABASE_DIR.*APPLIANCE_VIRUS_SCAN"):
        scanner_commands(settings, tmp_path / "data", {})


def test_up_starts_no_clamd_when_one_is_configured_or_scanning_is_off(tmp_path):
    configured = make_settings({"virus_scan": "clamd", "clamd_socket": "/run/clamav/c.sock"})
    assert scanner_commands(configured, tmp_path, {}) == []
    assert scanner_commands(make_settings({"virus_scan": "off"}), tmp_path, {}) == []


def test_up_runs_clamd_in_the_foreground_and_tells_the_children_where(tmp_path):
    sigs = tmp_path / "sigs"
    sigs.mkdir()
    (sigs / "daily.cvd").write_bytes(b"x")
    settings = make_settings({"virus_scan": "clamd", "clamd_database_dir": str(sigs)})
    env: dict[str, str] = {}
    ((cmd, child_env),) = scanner_commands(settings, tmp_path / "data", env)
    config = (tmp_path / "data" / "clamd" / daemon.CONFIG).read_text()
    assert cmd == ["clamd", "--config-file", str(tmp_path / "data" / "clamd" / daemon.CONFIG)]
    assert "Foreground yes" in config and f"DatabaseDirectory {sigs}" in config
    assert env["APPLIANCE_CLAMD_SOCKET"] == child_env["APPLIANCE_CLAMD_SOCKET"]
    address = env["APPLIANCE_CLAMD_SOCKET"]
    listen = f"TCPSocket {address.rpartition(':')[2]}" if address.startswith("tcp://") else ""
    assert (listen or f"LocalSocket {address}") in config
