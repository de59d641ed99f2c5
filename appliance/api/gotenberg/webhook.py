"""Gotenberg's webhook headers -> a ``Hook`` (checked as Gotenberg checks them, and the URLs
by the address guard before anything is made); ``conversions.gotenberg`` sends it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from urllib.parse import urlsplit

from appliance.api.gotenberg.fields import GotenbergError
from appliance.conversions.gotenberg import METHODS, Hook
from appliance.conversions.webhooks import check_url
from appliance.errors import ClientError
from appliance.security.netguard import resolve

URL = "Gotenberg-Webhook-Url"
ERROR_URL = "Gotenberg-Webhook-Error-Url"
EVENTS_URL = "Gotenberg-Webhook-Events-Url"
METHOD = "Gotenberg-Webhook-Method"
ERROR_METHOD = "Gotenberg-Webhook-Error-Method"
EXTRA_HEADERS = "Gotenberg-Webhook-Extra-Http-Headers"


def hook_of(headers: Mapping[str, str], trace: str, output_filename: str | None) -> Hook | None:
    """The webhook the request's headers ask for; None when they ask for none."""
    url = headers.get(URL)
    if not url:
        return None
    error_url = headers.get(ERROR_URL) or ""
    events_url = headers.get(EVENTS_URL) or ""
    if not error_url and not events_url:
        raise GotenbergError(
            400,
            f"At least one of '{ERROR_URL}' or '{EVENTS_URL}' headers must be provided",
        )
    for value, name in ((url, URL), (error_url, ERROR_URL), (events_url, EVENTS_URL)):
        if not value:
            continue
        try:
            check_url(value, name)
        except ClientError:
            raise GotenbergError(400, f"Invalid '{name}' header value: {value!r}") from None
    return Hook(
        url=url,
        error_url=error_url,
        events_url=events_url,
        method=_method(headers, METHOD),
        error_method=_method(headers, ERROR_METHOD),
        extra_headers=_extra_headers(headers.get(EXTRA_HEADERS)),
        output_filename=output_filename,
        trace=trace,
    )


def _method(headers: Mapping[str, str], name: str) -> str:
    method = (headers.get(name) or "POST").upper()
    if method not in METHODS:
        raise GotenbergError(
            400,
            f"Invalid '{name}' header value: expected 'POST', 'PATCH' or 'PUT', but got '{method}'",
        )
    return method


def _extra_headers(raw: str | None) -> dict[str, str]:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise GotenbergError(400, f"Invalid '{EXTRA_HEADERS}' header value: {exc}") from None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise GotenbergError(
            400, f"Invalid '{EXTRA_HEADERS}' header value: not an object of strings"
        )
    return value


async def check_addresses(hook: Hook, allow_private: bool) -> None:
    """The URLs' hosts resolve to addresses the guard allows (403 as Gotenberg refuses a
    filtered URL); each delivery checks again."""
    for url in filter(None, (hook.url, hook.error_url, hook.events_url)):
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        host = parts.hostname or ""
        try:
            await asyncio.to_thread(resolve, host, port, allow_private=allow_private)
        except ClientError:
            raise GotenbergError(403, "Forbidden") from None
