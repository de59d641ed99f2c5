"""The hot reads' bare ASGI answer (responses.Data) is what the Response of responses.data
would have sent: the same status, headers and body."""

from __future__ import annotations

import pytest
from litestar import Litestar, Response, get
from litestar.testing import TestClient
from litestar.types import ASGIApp

from appliance.api import responses

DOC = '{"id":"5b0d","status":"finished","name":"caf\\u00e9 \\u2603"}'


@get("/response/{status:int}")
async def as_response(status: int) -> Response[bytes]:
    return responses.data(DOC, status)


@get("/bare/{status:int}")
async def as_bare(status: int) -> ASGIApp:
    return responses.Data(DOC, status)


@pytest.mark.parametrize("status", [200, 201])
def test_the_bare_answer_sends_what_the_response_sends(status: int) -> None:
    with TestClient(Litestar([as_response, as_bare])) as client:
        want = client.get(f"/response/{status}")
        got = client.get(f"/bare/{status}")
    assert (
        (got.status_code, got.content)
        == (want.status_code, want.content)
        == (
            status,
            b'{"data":' + DOC.encode() + b"}",
        )
    )
    assert sorted(got.headers.multi_items()) == sorted(want.headers.multi_items())
