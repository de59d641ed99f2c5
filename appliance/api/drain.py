"""Draining an API process so it can stop without failing a request behind a load balancer.

A reload of nginx to take a host out of its upstream closes the clients' idle keep-alive
connections, and a request a client sends on one at that instant is lost; an API process
that stops closes nginx's idle connections to it, with the same race on nginx's side (a POST
sent on a connection the server just closed is not retried). So a drain works from the API
host instead (deploy/pyinfra/roles/rolling.py):

1. the drain file appears: from then on every response carries ``Connection: close``, so
   each connection nginx uses once more is closed by nginx itself after the response, and
   ``/health/ready`` answers 503 ``draining`` (for load balancers that probe it);
2. the host's firewall refuses new connections to the API port, which nginx retries on
   another host (safe even for a POST: nothing was sent);
3. once no connection is left, the process stops and restarts with nothing in flight.

The file is looked at no more than every ``CHECK_SECONDS``, never per request.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

CHECK_SECONDS = 0.5
CLOSE = (b"connection", b"close")


class DrainFlag:
    """Whether the drain file exists, read at most every ``CHECK_SECONDS``."""

    def __init__(self, path: str) -> None:
        self.path = Path(path) if path else None
        self._active = False
        self._checked = float("-inf")

    def active(self) -> bool:
        if self.path is None:
            return False
        now = time.monotonic()
        if now - self._checked >= CHECK_SECONDS:
            self._checked = now
            self._active = self.path.exists()
        return self._active


class Drain:
    """Wraps an ASGI app: while draining, responses ask the client to close the connection."""

    def __init__(self, app: Any, flag: DrainFlag) -> None:
        self.app = app
        self.flag = flag

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not self.flag.active():
            await self.app(scope, receive, send)
            return

        async def send_closing(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), CLOSE]
            await send(message)

        await self.app(scope, receive, send_closing)
