"""The clamd client and the scanning policy against a real clamd (tests/harness/clamd.py)."""

import os
import time

import pytest

from appliance.errors import RetryableError
from appliance.metrics import VIRUS_SCANS
from appliance.scanning import scanner
from appliance.scanning.clamd import Clamd, Unavailable
from appliance.scanning.scanner import VirusFound
from tests.conftest import make_settings
from tests.harness.clamd import EICAR, EICAR_SIGNATURE, MARKER, MARKER_SIGNATURE


def scanning(clamd, wait: float = 10.0):
    return make_settings(
        {"virus_scan": "clamd", "clamd_socket": clamd.address, "clamd_wait_seconds": str(wait)}
    )


def test_eicar_is_found_by_its_hash(clamd):
    verdict = Clamd(clamd.address).scan_bytes(EICAR)
    assert not verdict.clean
    assert verdict.signature == f"{EICAR_SIGNATURE}.UNOFFICIAL"


def test_a_marker_inside_a_valid_png_is_found(clamd, tmp_path):
    import pyvips

    path = tmp_path / "x.png"
    pyvips.Image.black(64, 64).write_to_file(str(path))
    path.write_bytes(path.read_bytes() + MARKER)  # bytes after IEND: still a valid PNG
    assert pyvips.Image.new_from_file(str(path)).width == 64
    verdict = Clamd(clamd.address).scan_file(path)
    assert verdict.signature == f"{MARKER_SIGNATURE}.UNOFFICIAL"


def test_a_clean_file_larger_than_clamds_default_stream_limit_is_clean(clamd, tmp_path):
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(30 * 1024 * 1024))  # clamd's own default limit is 25 MB
    assert Clamd(clamd.address).scan_file(path).clean


def test_the_marker_is_found_past_the_first_chunk(clamd):
    data = os.urandom(3 * 1024 * 1024) + MARKER + os.urandom(1024)
    assert not Clamd(clamd.address).scan_bytes(data).clean


def test_clamd_down_is_unavailable_not_a_verdict(clamd):
    clamd.stop()
    client = Clamd(clamd.address, timeout=2)
    assert not client.ping()
    with pytest.raises(Unavailable):
        client.scan_bytes(b"hello")


def test_check_file_refuses_an_infected_file_with_virus_found(clamd, tmp_path):
    path = tmp_path / "eicar.com"
    path.write_bytes(EICAR)
    before = VIRUS_SCANS.labels("infected")._value.get()
    with pytest.raises(VirusFound) as caught:
        scanner.check_file(scanning(clamd), path, "eicar.com")
    assert caught.value.code == "VIRUS_FOUND"
    assert "eicar.com" in caught.value.message and EICAR_SIGNATURE in caught.value.message
    assert VIRUS_SCANS.labels("infected")._value.get() == before + 1


def test_check_file_waits_for_a_clamd_that_comes_up_late(clamd, tmp_path):
    path = tmp_path / "eicar.com"
    path.write_bytes(EICAR)
    clamd.stop()
    clamd.start(delay=1.5)  # down now, up in 1.5 s (as a clamd still loading)
    start = time.monotonic()
    with pytest.raises(VirusFound):
        scanner.check_file(scanning(clamd, wait=20), path, "eicar.com")
    assert time.monotonic() - start >= 1.4


def test_check_file_fails_closed_and_retryable_when_clamd_stays_down(clamd, tmp_path):
    path = tmp_path / "clean.txt"
    path.write_text("hello")
    clamd.stop()
    with pytest.raises(RetryableError) as caught:
        scanner.check_file(scanning(clamd, wait=0.5), path, "clean.txt")
    assert caught.value.code == "SCANNER_UNAVAILABLE"


def test_scanning_off_lets_the_file_through_without_clamd(tmp_path):
    path = tmp_path / "eicar.com"
    path.write_bytes(EICAR)
    scanner.check_file(make_settings({"virus_scan": "off"}), path, "eicar.com")
