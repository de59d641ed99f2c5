"""An engine's one way to the network: asking the worker, which fetches through the address
guard on the engine's behalf.

Engines never reach the network themselves (the helper's sandbox has none). A few need pages
from outside (Chromium capturing a website): such an engine calls the function ``fetcher()``
returns with a ``FetchRequest`` and gets a ``FetchReply``. In a sandboxed helper that function
writes ``{"fetch": request}`` to the worker on the protocol pipe and reads the answer, one JSON
line, from its stdin (``connect``); the worker answers with the fetcher the running task set
(``fetching``), or with an error when it set none. With the sandbox off, the engine runs in the
worker's own thread and gets that fetcher directly.

What the worker's fetcher does (resolve, check the address, follow redirects checking each hop)
is the task operation's business (conversions/operations/capture_website.py); this module only
carries requests and replies.
"""

from __future__ import annotations

import base64
import contextlib
import contextvars
import json
import threading
from collections.abc import Callable, Iterator
from typing import IO, Any

import msgspec


class FetchRequest(msgspec.Struct, kw_only=True):
    method: str
    url: str
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    body: str | None = None  # base64


class FetchReply(msgspec.Struct, kw_only=True):
    """A response (``url``: where the redirects ended), or ``error`` when there is none."""

    status: int = 0
    url: str = ""
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    body: str = ""  # base64
    error: str | None = None
    code: str | None = None  # the error's stable code (URL_NOT_ALLOWED, ...) when it has one

    def content(self) -> bytes:
        return base64.b64decode(self.body)


Fetcher = Callable[[FetchRequest], FetchReply]

_worker_fetcher: contextvars.ContextVar[Fetcher | None] = contextvars.ContextVar(
    "appliance_engine_fetcher", default=None
)
_pipe: tuple[IO[str], IO[str]] | None = None  # (stdin, protocol out) inside a helper
_pipe_lock = threading.Lock()


@contextlib.contextmanager
def fetching(fetcher: Fetcher) -> Iterator[None]:
    """Worker side: engine runs in this thread (and context) may fetch through ``fetcher``."""
    token = _worker_fetcher.set(fetcher)
    try:
        yield
    finally:
        _worker_fetcher.reset(token)


def answer(raw: Any) -> dict[str, Any]:
    """Worker side: the reply to a helper's ``{"fetch": raw}``, as a JSON object."""
    fetcher = _worker_fetcher.get()
    if fetcher is None:
        return {"error": "this conversion has no network"}
    try:
        request = msgspec.convert(raw, FetchRequest)
    except msgspec.ValidationError:
        return {"error": "malformed fetch request"}
    return msgspec.to_builtins(fetcher(request))  # type: ignore[no-any-return]


def connect(stdin: IO[str], protocol: IO[str]) -> None:
    """Helper side: requests go to the worker over the helper's own pipes (helper.run)."""
    global _pipe
    _pipe = (stdin, protocol)


def _ask_worker(request: FetchRequest) -> FetchReply:
    assert _pipe is not None
    stdin, protocol = _pipe
    with _pipe_lock:
        protocol.write(json.dumps({"fetch": msgspec.to_builtins(request)}) + "\n")
        protocol.flush()
        line = stdin.readline()
    if not line:
        return FetchReply(error="the worker went away")
    return msgspec.json.decode(line, type=FetchReply)


def fetcher() -> Fetcher | None:
    """How an engine fetches now: through the worker from a helper, or the worker's own
    fetcher with the sandbox off; None when neither is set (no network at all)."""
    if _pipe is not None:
        return _ask_worker
    return _worker_fetcher.get()
