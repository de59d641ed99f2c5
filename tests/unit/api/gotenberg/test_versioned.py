"""Gotenberg-Version on the answers of requests whose key passed, whatever their status,
and on no other."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from appliance.api.gotenberg.versioned import VersionHeader, key_passed
from appliance.conversions.gotenberg import VERSION


def answered(status: int, *, passed: bool) -> dict[bytes, bytes]:
    """The headers an app answering ``status`` sends through the middleware."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if passed:
            key_passed(scope)
        start = {"type": "http.response.start", "status": status, "headers": [(b"a", b"1")]}
        await send(start)
        await send({"type": "http.response.body", "body": b""})

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(VersionHeader(app)({"type": "http", "path": "/forms/x"}, None, send))
    return dict(sent[0]["headers"])


@pytest.mark.parametrize("status", [200, 204, 400, 404, 413, 429, 500, 501, 503])
def test_an_answer_whose_key_passed_carries_the_version(status):
    assert answered(status, passed=True) == {b"a": b"1", b"gotenberg-version": VERSION.encode()}


@pytest.mark.parametrize("status", [200, 401, 429, 503])
def test_an_answer_without_a_key_that_passed_shows_none(status):
    assert answered(status, passed=False) == {b"a": b"1"}


def test_a_refusal_shows_none_even_after_the_key_passed():
    assert b"gotenberg-version" not in answered(403, passed=True)
