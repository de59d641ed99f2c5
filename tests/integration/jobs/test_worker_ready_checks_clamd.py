"""A worker group's /health/ready checks clamd when scanning is on: imports wait while it is
down, so the group is not ready; with scanning off there is nothing to check, and it says so."""

import msgspec

from appliance.jobs.health_server import Probes


def test_a_worker_is_ready_only_while_clamd_answers(settings, clamd):
    scanning = msgspec.structs.replace(settings, virus_scan="clamd", clamd_socket=clamd.address)
    probes = Probes(scanning, scans=True)
    assert probes.check()["clamd"] == "ok"
    clamd.stop()
    assert probes.check()["clamd"].startswith("error")


def test_the_api_groups_port_checks_no_clamd(settings, clamd):
    scanning = msgspec.structs.replace(settings, virus_scan="clamd", clamd_socket=clamd.address)
    clamd.stop()
    assert "clamd" not in Probes(scanning).check()  # the API stores, the workers scan
    assert "clamd" not in Probes(settings, scans=True).check()  # scanning off
