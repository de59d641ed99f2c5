"""The ``Idempotency-Key`` request header of the creating routes, and the answer replayed to a
repeat (``conversions.idempotency`` keeps the answers)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response

from appliance.api import responses
from appliance.conversions.idempotency import Idempotency, Replayed, fingerprint, parse_key

HEADER = "Idempotency-Key"
# Set on a replayed answer, so a client (and a test) can tell it from a first one.
REPLAYED_HEADER = "Idempotent-Replayed"


async def requested(request: Request[Any, Any, Any], route: str) -> Idempotency | None:
    """The request's key with the fingerprint of ``route`` (which names the route and its
    path parameters) and its body, or None without the header."""
    header = request.headers.get(HEADER)
    if header is None:
        return None
    return Idempotency(parse_key(header), fingerprint(route, await request.body()))


def replayed(_request: Request[Any, Any, Any], replay: Replayed) -> Response[bytes]:
    """The first answer of a repeated request, as it was (the app's handler of ``Replayed``)."""
    answer = responses.data(replay.body, replay.status)
    answer.headers[REPLAYED_HEADER] = "true"
    return answer
