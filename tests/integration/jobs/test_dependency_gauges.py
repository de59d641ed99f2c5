"""Every group's metrics port says whether its host reaches each dependency now
(``appliance_dependency_up``), so an alert names the one a host lost, storage included."""

import threading
import time

import msgspec
from prometheus_client.parser import text_string_to_metric_families

from appliance.jobs import health_server
from appliance.jobs.health_server import Probes
from appliance.local_services import free_port
from appliance.metrics.process import exposition


def dependency_up(text: bytes) -> dict[str, float]:
    for family in text_string_to_metric_families(text.decode()):
        if family.name == "appliance_dependency_up":
            return {s.labels["dependency"]: s.value for s in family.samples}
    raise AssertionError("no appliance_dependency_up in the exposition")


def test_a_worker_group_reports_each_dependency_reached(settings):
    probes = Probes(settings)
    assert dependency_up(exposition(probes.gauges(shared=False))) == {
        "postgres": 1.0,
        "redis": 1.0,
        "storage": 1.0,
    }


def test_a_dependency_the_host_cannot_reach_reads_0_and_the_others_still_1(settings):
    port = free_port()  # reserved for this process, nothing listens: refused
    cut_off = msgspec.structs.replace(settings, redis_url=f"redis://127.0.0.1:{port}/0")
    text = exposition(Probes(cut_off).gauges(shared=True))
    assert dependency_up(text) == {"postgres": 1.0, "redis": 0.0, "storage": 1.0}
    assert b"appliance_storage_objects " in text  # shared state from Postgres still read


def test_a_probe_that_hangs_costs_one_deadline_and_is_not_started_again(settings, monkeypatch):
    """A dependency that never answers (a dead NFS mount under local storage): each check
    returns within the one deadline, the others still read as reached, and the hanging probe
    holds one thread, however many scrapes come."""
    monkeypatch.setattr(health_server, "PROBE_TIMEOUT", 0.5)
    probes = Probes(settings)
    release, calls = threading.Event(), []

    def hang() -> None:
        calls.append(1)
        release.wait(30)

    probes.storage.check = hang  # type: ignore[method-assign]
    try:
        for _ in range(4):
            start = time.monotonic()
            checks = probes.check()
            assert time.monotonic() - start < 2.0
            assert checks == {"postgres": "ok", "redis": "ok", "storage": "error: timeout"}
        assert len(calls) == 1
    finally:
        release.set()
    time.sleep(0.2)  # the hung probe has returned: the next check starts a new one
    probes.check()
    assert len(calls) == 2
