"""The HTTP wrapper: counts and times each request under its route template and status
class, and carries X-Request-ID."""

from __future__ import annotations

import json
import logging

from litestar import Litestar, get
from litestar.testing import TestClient
from prometheus_client import REGISTRY

from appliance import logs
from appliance.metrics.http import HttpMetrics

seen_ids: list[str | None] = []


@get("/things/{thing_id:int}")
async def thing(thing_id: int) -> dict[str, int]:
    seen_ids.append(logs.request_id.get())
    if thing_id == 0:
        raise ValueError("boom")
    return {"id": thing_id}


wrapper: HttpMetrics | None = None


def client() -> TestClient:
    global wrapper
    app = Litestar(route_handlers=[thing], debug=False)
    wrapper = HttpMetrics(app.asgi_handler)
    app.asgi_handler = wrapper  # type: ignore[assignment]
    return TestClient(app)


def flushed() -> None:
    """The wrapper writes its tallies at most once a second; tests read them at once."""
    assert wrapper is not None
    wrapper.flush()


def sample(name: str, route: str, status: str, method: str = "GET") -> float:
    labels = {"route": route, "method": method, "status": status}
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_request_is_counted_and_timed_under_its_route_template_not_its_url():
    before = sample("appliance_http_requests_total", "/things/{thing_id}", "2xx")
    before_hist = sample(
        "appliance_http_request_duration_seconds_count", "/things/{thing_id}", "2xx"
    )
    with client() as c:
        assert c.get("/things/41").status_code == 200
        assert c.get("/things/42").status_code == 200
    flushed()
    assert sample("appliance_http_requests_total", "/things/{thing_id}", "2xx") == before + 2
    assert (
        sample("appliance_http_request_duration_seconds_count", "/things/{thing_id}", "2xx")
        == before_hist + 2
    )
    assert sample("appliance_http_requests_total", "/things/41", "2xx") == 0.0


def test_latency_lands_in_the_right_bucket():
    route, ok = "/things/{thing_id}", {"method": "GET", "status": "2xx"}
    name = "appliance_http_request_duration_seconds_bucket"
    before = REGISTRY.get_sample_value(name, {"route": route, **ok, "le": "0.005"}) or 0.0
    before_sum = sample("appliance_http_request_duration_seconds_sum", route, "2xx")
    with client() as c:
        assert c.get("/things/3").status_code == 200
    flushed()
    # A local request takes well under 5 ms: it is in the first bucket and all above it.
    assert REGISTRY.get_sample_value(name, {"route": route, **ok, "le": "0.005"}) == before + 1
    after_sum = sample("appliance_http_request_duration_seconds_sum", route, "2xx")
    assert 0 < after_sum - before_sum < 0.005


def test_errors_and_unmatched_paths_are_counted_by_status_class():
    errors = sample("appliance_http_requests_total", "/things/{thing_id}", "5xx")
    unmatched = sample("appliance_http_requests_total", "unmatched", "4xx")
    with client() as c:
        assert c.get("/things/0").status_code == 500
        assert c.get("/no/such/path/123").status_code == 404
    flushed()
    assert sample("appliance_http_requests_total", "/things/{thing_id}", "5xx") == errors + 1
    assert sample("appliance_http_requests_total", "unmatched", "4xx") == unmatched + 1


def test_a_given_request_id_is_used_and_returned():
    seen_ids.clear()
    with client() as c:
        r = c.get("/things/1", headers={"X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    assert seen_ids == ["abc-123"]


def test_a_missing_or_unsafe_request_id_is_replaced_by_a_new_one():
    seen_ids.clear()
    with client() as c:
        first = c.get("/things/1").headers["x-request-id"]
        second = c.get("/things/1", headers={"X-Request-ID": 'evil"\n{}'}).headers["x-request-id"]
    assert len(first) == 32 and len(second) == 32 and first != second
    assert seen_ids == [first, second]


def test_json_log_lines_carry_the_ids_in_context():
    record = logging.LogRecord("appliance.x", logging.INFO, __file__, 1, "did %s", ("it",), None)
    tokens = [logs.request_id.set("r1"), logs.job_id.set("j1"), logs.task_id.set("t1")]
    try:
        line = json.loads(logs.JsonFormatter().format(record))
    finally:
        for var, token in zip((logs.request_id, logs.job_id, logs.task_id), tokens, strict=True):
            var.reset(token)
    assert line["msg"] == "did it" and line["level"] == "INFO" and line["logger"] == "appliance.x"
    assert (line["request_id"], line["job_id"], line["task_id"]) == ("r1", "j1", "t1")
    assert "request_id" not in json.loads(logs.JsonFormatter().format(record))
