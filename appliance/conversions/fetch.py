"""import/url: download over http(s) with the size limit, never to internal addresses.

Each hop's host is resolved once, checked by ``netguard``, and the connection goes to that
exact address (TLS still verifies the host name), so DNS rebinding cannot slip past the check
(``open_pinned``, which webhook deliveries use too). Redirects are followed by hand (at most
5), each one checked the same way.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from email.message import Message
from pathlib import PurePosixPath
from urllib.parse import unquote, urljoin, urlsplit

import urllib3

from appliance.conversions.files import Spool, safe_filename
from appliance.errors import InvalidData, PermanentError, RetryableError
from appliance.security.netguard import resolve

MAX_REDIRECTS = 5
TOTAL_TIMEOUT_FACTOR = 10
CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})
USER_AGENT = "appliance-import/1"


def fetch(
    url: str,
    spool: Spool,
    *,
    allow_private: bool,
    timeout: float,
    headers: dict[str, str] | None = None,
) -> str:
    """Stream ``url`` into ``spool``; returns the file name the server or URL suggests.

    ``timeout`` bounds each connect and read; the whole download gets ``TOTAL_TIMEOUT_FACTOR``
    times that, so a server dripping bytes cannot hold a worker for hours."""
    deadline = time.monotonic() + timeout * TOTAL_TIMEOUT_FACTOR
    headers = dict(headers or {})
    too_long = f"Download of {url} took longer than {timeout * TOTAL_TIMEOUT_FACTOR:.0f} s"
    for _ in range(MAX_REDIRECTS + 1):
        pool, response = _hop(
            url,
            allow_private=allow_private,
            timeout=timeout,
            headers=headers,
            deadline=deadline,
            too_long=too_long,
        )
        try:
            if response.status in (301, 302, 303, 307, 308):
                location = response.headers.get("Location")
                if not location:
                    raise PermanentError(
                        f"Redirect without Location from {url}", code="IMPORT_FAILED"
                    )
                target = urljoin(url, location)
                if _origin(target) != _origin(url):  # credentials stay with their origin
                    headers = {
                        k: v for k, v in headers.items() if k.lower() not in CREDENTIAL_HEADERS
                    }
                url = target
                continue
            if response.status >= 500 or response.status == 429:
                raise RetryableError(f"{url} answered HTTP {response.status}")
            if response.status != 200:
                raise PermanentError(f"{url} answered HTTP {response.status}", code="IMPORT_FAILED")
            # read1: whatever has arrived (<= 64 KiB), so the deadline is checked often even
            # when the server sends a few bytes at a time.
            while chunk := response.read1(1 << 16):
                spool.write(chunk)
                if time.monotonic() > deadline:
                    raise RetryableError(too_long)
            return _filename(url, response.headers.get("Content-Disposition"))
        except urllib3.exceptions.HTTPError as exc:  # the cause goes to the log only
            raise RetryableError(f"Download of {url} failed") from exc
        finally:
            response.release_conn()
            pool.close()
    raise PermanentError(f"Too many redirects from {url}", code="IMPORT_FAILED")


def _hop(
    url: str,
    *,
    allow_private: bool,
    timeout: float,
    headers: dict[str, str],
    deadline: float,
    too_long: str,
) -> tuple[urllib3.HTTPConnectionPool, urllib3.BaseHTTPResponse]:
    """``open_pinned`` with what the deadline has left when that is less than ``timeout``: a
    redirect chain spends the one deadline, and running out of it is reported as such."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise RetryableError(too_long)
    try:
        return open_pinned(
            "GET",
            url,
            allow_private=allow_private,
            timeout=min(timeout, remaining),
            headers=headers,
        )
    except RetryableError as exc:
        if time.monotonic() >= deadline:
            raise RetryableError(too_long) from exc
        raise


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname, parts.port


def open_pinned(
    method: str,
    url: str,
    *,
    allow_private: bool,
    timeout: float,
    headers: dict[str, str],
    body: bytes | Iterable[bytes] | None = None,
    user_agent: str = USER_AGENT,
) -> tuple[urllib3.HTTPConnectionPool, urllib3.BaseHTTPResponse]:
    """Send one request to ``url`` at the one address its host resolved to, once ``netguard``
    allowed it; redirects are the caller's. ``timeout`` bounds the connect and each read.
    The caller releases the response and closes the pool."""
    try:  # a redirect's Location is the server's to write: a bad host or port is refused
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        parts, port = urlsplit(""), 0
    if parts.scheme not in ("http", "https") or not parts.hostname or not port:
        raise InvalidData(
            f"Only http and https URLs are allowed, not {url!r}",
            code="INVALID_URL",
            errors={"url": ["must be http:// or https://"]},
        )
    address = resolve(parts.hostname, port, allow_private=allow_private)
    limits = urllib3.Timeout(connect=timeout, read=timeout)
    pool: urllib3.HTTPConnectionPool
    if parts.scheme == "https":
        # Connect to the checked address; SNI and certificate check use the host name.
        pool = urllib3.HTTPSConnectionPool(
            address,
            port,
            timeout=limits,
            retries=False,
            maxsize=1,
            server_hostname=parts.hostname,
            assert_hostname=parts.hostname,
        )
    else:
        pool = urllib3.HTTPConnectionPool(address, port, timeout=limits, retries=False, maxsize=1)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    host_header = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    try:
        response = pool.urlopen(
            method,
            path,
            body=body,
            headers={**headers, "Host": host_header, "User-Agent": user_agent},
            redirect=False,
            preload_content=False,
        )
    except urllib3.exceptions.HTTPError as exc:
        pool.close()
        raise RetryableError(f"Cannot reach {parts.hostname}") from exc
    return pool, response


def _filename(url: str, disposition: str | None) -> str:
    if disposition:
        msg = Message()
        msg["content-disposition"] = disposition
        name = msg.get_filename()
        if name:
            return safe_filename(name)
    name = unquote(PurePosixPath(urlsplit(url).path).name)
    return safe_filename(re.sub(r"\s+", " ", name) or "file")
