"""The API process's cap on requests in flight (api/admission.py), on a bare ASGI app."""

from __future__ import annotations

import asyncio
import json

from appliance.api.admission import InFlightCap


class Held:
    """An ASGI app whose requests stay open until ``release`` is set."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.entered = 0

    async def __call__(self, scope, receive, send) -> None:
        self.entered += 1
        await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


async def _request(app, path: str) -> tuple[int, dict[bytes, bytes], bytes]:
    sent: list[dict] = []

    async def send(message) -> None:
        sent.append(message)

    await app({"type": "http", "path": path, "method": "GET"}, None, send)
    return sent[0]["status"], dict(sent[0]["headers"]), sent[1]["body"]


def test_past_the_cap_a_request_is_refused_at_once_and_waits_are_not_counted() -> None:
    async def run() -> None:
        held = Held()
        cap = InFlightCap(held, 2, "/sync")
        first = [asyncio.create_task(_request(cap, f"/v2/jobs/{i}")) for i in range(2)]
        waits = [
            asyncio.create_task(_request(cap, path))
            for path in ("/sync/v2/jobs/x", "/v2/jobs/x/wait", "/v2/s/x", "/health/ready")
        ]
        for _ in range(1000):  # until the six are inside the app
            if held.entered == 6:
                break
            await asyncio.sleep(0)
        status, headers, body = await asyncio.wait_for(_request(cap, "/v2/tasks"), 1)
        assert status == 503 and headers[b"retry-after"] == b"1"
        assert json.loads(body)["code"] == "BUSY"
        assert held.entered == 6  # the refused request never reached the app
        held.release.set()
        assert [(await t)[0] for t in first + waits] == [200] * 6
        assert cap.active == 0
        assert (await _request(cap, "/v2/tasks"))[0] == 200

    asyncio.run(run())


def test_a_cap_of_zero_lets_everything_in() -> None:
    async def run() -> None:
        held = Held()
        held.release.set()
        cap = InFlightCap(held, 0, "/sync")
        assert (await _request(cap, "/v2/jobs"))[0] == 200

    asyncio.run(run())
