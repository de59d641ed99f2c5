"""Decides whether an outbound connection (import/url, import/s3 and export/s3, later
webhooks) may reach an address.

Checked on the resolved IP, never the host name, and again on every redirect, so DNS tricks
and redirects to internal services are refused. Cloud metadata addresses are link-local or
explicitly listed here. ``GuardedPoolManager`` is a urllib3 pool manager (for clients such as
``minio`` that take one) whose every request goes to an address checked here.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from typing import Any

import urllib3
from urllib3.util import parse_url

from appliance.errors import InvalidData

log = logging.getLogger(__name__)

# Cloud metadata endpoints outside the link-local range (AWS IPv6, Alibaba, Oracle legacy).
_METADATA = {
    ipaddress.ip_address("fd00:ec2::254"),
    ipaddress.ip_address("100.100.100.200"),
    ipaddress.ip_address("192.0.0.192"),
}


_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, NAT64, 6to4, IPv4-compatible), which
    is where a packet to it may end up."""
    if ip.ipv4_mapped:
        return ip.ipv4_mapped
    if ip.sixtofour:
        return ip.sixtofour
    if ip in _NAT64 or ip in _IPV4_COMPATIBLE:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if ip in _METADATA:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None and not is_public(inner):
            return False
    return ip.is_global and not ip.is_multicast


def resolve(host: str, port: int, *, allow_private: bool) -> str:
    """Resolve ``host`` and return one address it may be reached at, or raise InvalidData."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise InvalidData(
            f"Cannot resolve host {host!r}",
            code="INVALID_URL",
            errors={"url": [f"cannot resolve {host!r}"]},
        ) from exc
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    if not allow_private:
        # All must be public: a name that also resolves to an internal address is refused.
        bad = [a for a in addresses if not is_public(a)]
        if bad:  # which address goes to the log only: the client learns no internal map
            log.warning("refused %s: it resolves to %s", host, bad[0])
            raise InvalidData(
                f"The URL's host {host!r} resolves to a non-public address",
                code="URL_NOT_ALLOWED",
                errors={
                    "url": ["private, loopback, link-local and metadata addresses are not allowed"]
                },
            )
    return str(addresses[0])


class GuardedPoolManager(urllib3.PoolManager):
    """A urllib3 pool manager whose every request goes to an address ``resolve`` allowed just
    before it: the host is resolved and checked per request, and the connection is made to
    that very address (the Host header names the host; TLS checks the certificate against the
    host name), so a name that resolves elsewhere after its check (DNS rebinding) reaches
    nothing new. Redirects are returned, never followed."""

    def __init__(self, *, allow_private: bool, **kw: Any) -> None:
        super().__init__(**kw)
        self.allow_private = allow_private

    def connection_from_host(
        self,
        host: str | None,
        port: int | None = None,
        scheme: str | None = "http",
        pool_kwargs: dict[str, Any] | None = None,
    ) -> urllib3.HTTPConnectionPool:
        scheme = (scheme or "http").lower()
        name = (host or "").strip("[]")
        port = port or (443 if scheme == "https" else 80)
        address = resolve(name, port, allow_private=self.allow_private)
        kwargs = dict(pool_kwargs or {})
        if scheme == "https":
            kwargs |= {"server_hostname": name, "assert_hostname": name}
        return super().connection_from_host(address, port, scheme, kwargs)

    def urlopen(  # type: ignore[override]
        self, method: str, url: str, redirect: bool = True, **kw: Any
    ) -> urllib3.BaseHTTPResponse:
        headers = urllib3.HTTPHeaderDict(kw.get("headers") or self.headers)
        if "Host" not in headers:  # else urllib3 would name the address
            headers["Host"] = parse_url(url).netloc or ""
        kw["headers"] = headers
        return super().urlopen(method, url, redirect=False, **kw)
