"""Real answers of the API against its own OpenAPI document: the status is documented for the
route and the body matches the schema documented for that status. Before, the document said
every answer was a JSON string, errors had Litestar's shape and only 200/201 and 400 existed."""

from __future__ import annotations

import uuid

import pytest
import schemathesis
from litestar import Litestar

# No such resource in a fresh database; fixed, since it is part of the tests' ids, which every
# pytest-xdist worker must collect alike.
UNKNOWN = str(uuid.uuid5(uuid.NAMESPACE_URL, "urn:appliance-tests:unknown"))
JOB = {"tasks": {"up": {"operation": "import/upload"}}, "tag": "t"}
REQUESTS = [
    ("POST", "/v2/jobs", "/v2/jobs", {"json": JOB}, 201),
    ("GET", "/v2/jobs", "/v2/jobs", {"params": {"include": "tasks"}}, 200),
    ("GET", "/v2/tasks", "/v2/tasks", {}, 200),
    ("POST", "/v2/import/upload", "/v2/import/upload", {"json": {}}, 201),
    ("GET", "/v2/jobs/{job_id}", f"/v2/jobs/{UNKNOWN}", {}, 404),
    ("DELETE", "/v2/tasks/{task_id}", f"/v2/tasks/{UNKNOWN}", {}, 404),
    ("POST", "/v2/convert", "/v2/convert", {"json": {}}, 422),
    ("GET", "/v2/tasks", "/v2/tasks", {"params": {"page": "0"}}, 422),
    (
        "POST",
        "/v2/jobs",
        "/v2/jobs",
        {"content": b"{", "headers": {"content-type": "application/json"}},
        400,
    ),
    ("GET", "/v2/jobs", "/v2/jobs", {"headers": {"authorization": "Bearer nope"}}, 401),
    ("GET", "/v2/operations", "/v2/operations", {"params": {"filter[operation]": "merge"}}, 200),
    (
        "GET",
        "/v2/convert/formats",
        "/v2/convert/formats",
        {"params": {"filter[input_format]": "png"}},
        200,
    ),
    ("GET", "/v2/users/me", "/v2/users/me", {}, 200),
    ("GET", "/v2/webhooks", "/v2/webhooks", {}, 200),
    ("GET", "/v2/users/me/webhooks", "/v2/users/me/webhooks", {}, 200),
    ("GET", "/v2/webhooks/deliveries", "/v2/webhooks/deliveries", {}, 200),
    ("GET", "/v2/webhooks/signing_secret", "/v2/webhooks/signing_secret", {}, 200),
    ("GET", "/v2/webhooks/{webhook_id}", f"/v2/webhooks/{UNKNOWN}", {}, 404),
    ("POST", "/v2/webhooks", "/v2/webhooks", {"json": {"url": "ftp://x", "events": []}}, 422),
    ("POST", "/sync/v2/jobs", "/sync/v2/jobs", {"json": JOB}, 201),
    ("GET", "/v2/signed-urls", "/v2/signed-urls", {}, 200),
    ("POST", "/v2/signed-urls", "/v2/signed-urls", {"json": {"name": "n"}}, 201),
    ("GET", "/v2/s/{base_id}", f"/v2/s/{UNKNOWN}", {"params": {"job": "{}", "s": "x"}}, 404),
    (
        "GET",
        "/v2/files/{key}",
        "/v2/files/a/b",
        {"params": {"expires": "1", "signature": "x"}},
        404,
    ),
]


@pytest.mark.parametrize(("method", "route", "path", "kwargs", "status"), REQUESTS)
def test_the_answer_is_documented_for_its_route_and_status(
    app: Litestar, api, method, route, path, kwargs, status
):
    schema = schemathesis.openapi.from_dict(app.openapi_schema.to_schema())
    operation = schema[route][method]
    r = api.request(method, path, **kwargs)
    assert r.status_code == status, r.text
    assert str(status) in operation.definition.raw["responses"]
    operation.validate_response(r)
