"""The ``Idempotency-Key`` request header of the creating routes, and the answer replayed to a
repeat (``conversions.idempotency`` keeps the answers)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, Response
from litestar.params import Parameter

from appliance.api import responses
from appliance.conversions.idempotency import Idempotency, Replayed, fingerprint, parse_key

HEADER = "Idempotency-Key"
# A creating handler's parameter: documents the header in the OpenAPI schema.
KeyHeader = Annotated[
    str | None,
    Parameter(
        header=HEADER,
        required=False,
        description="A unique key of this request (a UUID, for example): a repeat with the"
        " same key and body gets the first answer again instead of creating again (IETF"
        " draft Idempotency-Key); the same key with another body is a 422, and while the"
        " first is still in progress a 409. Keys are the user's own and kept"
        " APPLIANCE_IDEMPOTENCY_KEY_HOURS (24 h).",
    ),
]
# Set on a replayed answer, so a client (and a test) can tell it from a first one.
REPLAYED_HEADER = "Idempotent-Replayed"


async def requested(
    request: Request[Any, Any, Any], route: str, header: str | None
) -> Idempotency | None:
    """The request's key (its ``header``) with the fingerprint of ``route`` (which names the
    route and its path parameters) and its body, or None without the header."""
    if header is None:
        return None
    return Idempotency(parse_key(header), fingerprint(route, await request.body()))


def replayed(_request: Request[Any, Any, Any], replay: Replayed) -> Response[bytes]:
    """The first answer of a repeated request, as it was (the app's handler of ``Replayed``)."""
    answer = responses.data(replay.body, replay.status)
    answer.headers[REPLAYED_HEADER] = "true"
    return answer
