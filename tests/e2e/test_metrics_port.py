"""The API's metrics live on their own listener, never on the API's port: one process beside
granian's workers sums the samples of every worker process, bound to loopback by default."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest

from appliance.settings import Settings

DEPLOYMENT_ENV = {"APPLIANCE_API_WORKERS": "2"}  # two processes answer, one sum
pytestmark = pytest.mark.parametrize("deployment", ["local"], indirect=True)
LIVE = re.compile(
    r'^appliance_http_requests_total\{method="GET",route="/health/live",status="2xx"\} (\S+)$',
    re.M,
)


def listening(port: int) -> list[str]:
    """Local addresses of the TCP sockets listening on ``port`` (from /proc/net/tcp)."""
    found = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hexport = local.split(":")
        if state == "0A" and int(hexport, 16) == port:  # 0A: LISTEN
            found.append(".".join(str(int(address[i - 2 : i], 16)) for i in (8, 6, 4, 2)))
    return found


def live_requests(metrics_url: str) -> float:
    match = LIVE.search(httpx.get(metrics_url, timeout=10).text)
    return float(match[1]) if match else 0.0


def test_the_api_port_answers_metrics_with_404(deployment):
    assert httpx.get(deployment.url + "/metrics", timeout=10).status_code == 404
    assert httpx.get(deployment.url + "/metrics/", timeout=10).status_code == 404


def test_the_metrics_port_listens_on_loopback_by_default(deployment):
    assert Settings().api_metrics_host == "127.0.0.1"
    assert "APPLIANCE_API_METRICS_HOST" not in deployment.env
    assert listening(int(deployment.env["APPLIANCE_API_METRICS_PORT"])) == ["127.0.0.1"]


def test_the_metrics_port_sums_every_api_process_and_reads_shared_state(deployment):
    url = f"http://127.0.0.1:{deployment.env['APPLIANCE_API_METRICS_PORT']}/metrics"
    before = live_requests(url)
    for _ in range(40):  # a new connection each: granian spreads them over its workers
        assert httpx.get(deployment.url + "/health/live", timeout=10).status_code == 200
    time.sleep(1.5)  # each process writes its tallies at most once a second
    assert live_requests(url) - before == 40
    writers = {
        p.name.rsplit("_", 1)[1]
        for p in (deployment.data_dir / "metrics" / "api").glob("counter_*.db")
    }
    assert len(writers) >= 3  # both granian workers and the listener itself
    text = httpx.get(url, timeout=10).text
    assert 'appliance_queue_depth{queue="light"}' in text
    assert "appliance_storage_objects " in text
    for dependency in ("postgres", "redis", "storage"):
        assert f'appliance_dependency_up{{dependency="{dependency}"}} 1.0' in text
