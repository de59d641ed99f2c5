"""CloudConvert's JSON envelopes and error shape."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from appliance.errors import ClientError, RetryableError, Unavailable

JSON = "application/json"
# Seconds a client waits after a part behind the API failed for a moment (the S3 store did not
# answer): outages of that kind last seconds to a minute.
RETRYABLE_RETRY_AFTER = 5
# Lists stop here: page x per_page must stay an offset Postgres can take (a page of 10^17 was
# a 500), and nobody pages through a million pages.
MAX_PAGE = 1_000_000
FILE_BODY = "file_body"  # a route's opt: its body is a file, not JSON
_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "BODY_TOO_LARGE",
    422: "INVALID_DATA",
    429: "TOO_MANY_REQUESTS",
}


def data(doc: str, status: int = 200) -> Response[bytes]:
    """Wrap JSON text made by Postgres in ``{"data": ...}`` without re-encoding it."""
    return Response(enveloped(doc), status_code=status, media_type=JSON)


def enveloped(doc: str) -> bytes:
    return b'{"data":' + doc.encode() + b"}"


class Data:
    """``data(doc)`` as a bare ASGI answer, two messages with the same status, headers and
    body as its Response: for the hottest reads, a job's or a task's status, where building
    Litestar's Response and the ASGIResponse it becomes cost some 15% of a cached read. A
    route returning it is annotated ``-> ASGIApp`` and documents its answers itself."""

    __slots__ = ("body", "status")

    def __init__(self, doc: str, status: int = 200) -> None:
        self.body = enveloped(doc)
        self.status = status

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-type", JSON_BYTES), (b"content-length", b"%d" % len(self.body))]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


JSON_BYTES = JSON.encode()


def page(
    doc: str,
    request: Request[Any, Any, Any],
    page_no: int,
    per_page: int,
    has_next: bool,
    count: int,
) -> Response[bytes]:
    path = str(request.url.with_replacements(query=""))
    base = f"{path}?per_page={per_page}&page="
    extra = {
        "links": {
            "first": f"{base}1",
            "last": None,
            "prev": f"{base}{page_no - 1}" if page_no > 1 else None,
            "next": f"{base}{page_no + 1}" if has_next else None,
        },
        "meta": {
            "current_page": page_no,
            "path": path,
            "per_page": per_page,
            "from": (page_no - 1) * per_page + 1 if count else None,
            "to": (page_no - 1) * per_page + count if count else None,
        },
    }
    tail = msgspec.json.encode(extra)[1:]
    return Response(b'{"data":' + doc.encode() + b"," + tail, media_type=JSON)


def client_error(_: Request[Any, Any, Any], exc: ClientError) -> Response[Any]:
    return Response(
        exc.to_body(), status_code=exc.status, media_type=JSON, headers=exc.headers() or None
    )


def retryable(request: Request[Any, Any, Any], exc: RetryableError) -> Response[Any]:
    """A transient failure behind the API (storage unreachable): nothing of the request was
    kept (its transaction rolled back), so the client sends it again after Retry-After."""
    import logging

    logging.getLogger("appliance.api").warning("temporary failure: %r", exc, exc_info=exc)
    busy = Unavailable(
        "A service the appliance needs is unavailable; try again shortly",
        retry_after=RETRYABLE_RETRY_AFTER,
        code=exc.code,
    )
    return client_error(request, busy)


def http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    body: dict[str, Any] = {"code": _CODES.get(exc.status_code, "ERROR"), "message": exc.detail}
    handler = request.scope.get("route_handler")
    if exc.status_code == 413 and handler is not None and handler.opt.get(FILE_BODY):
        body["code"] = "FILE_TOO_LARGE"  # the body is the file
    if isinstance(exc, ValidationException):
        body["code"] = "INVALID_DATA"
        body["message"] = "The given data was invalid."
        errors: dict[str, list[str]] = {}
        for item in exc.extra or []:
            if isinstance(item, dict):
                key = client_name(request, str(item.get("key") or "body"))
                errors.setdefault(key, []).append(str(item.get("message")))
        body["errors"] = errors or {"body": [exc.detail]}
        return Response(body, status_code=422, media_type=JSON)
    return Response(
        body, status_code=exc.status_code, media_type=JSON, headers=getattr(exc, "headers", None)
    )


def client_name(request: Request[Any, Any, Any], key: str) -> str:
    """A handler argument as the client names it: a query parameter's own name
    (``filter[tag]`` for ``tag``), else the key as it is."""
    handler = request.scope.get("route_handler")
    param = handler.parsed_fn_signature.parameters.get(key) if handler else None
    alias = getattr(getattr(param, "kwarg_definition", None), "query", None)
    return alias or key


def server_error(_: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    import logging

    logging.getLogger("appliance.api").error("unhandled error", exc_info=exc)
    return Response(
        {"code": "INTERNAL_ERROR", "message": "Internal server error"},
        status_code=500,
        media_type=JSON,
    )
