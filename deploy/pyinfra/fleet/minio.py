"""MinIO's metrics behind its own authentication: Prometheus scrapes with a bearer token (an
HS512 JWT, as ``mc admin prometheus generate`` makes) for the MinIO user ``prometheus``,
whose only permission is ``admin:Prometheus``. The token is made here from that user's
secret, with a fixed expiry, so it is the same on every run (a re-run changes nothing) and a
new secret gives a new token."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

METRICS_USER = "prometheus"
METRICS_POLICY = "appliance-metrics"
# 2100-01-01T00:00:00Z: mc's tokens expire after 100 years; this one never changes.
TOKEN_EXPIRES = 4102444800


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def metrics_token(secret_key: str, access_key: str = METRICS_USER) -> str:
    """The bearer token MinIO accepts for ``access_key``'s metrics (signed with its secret)."""
    header = _b64(json.dumps({"alg": "HS512", "typ": "JWT"}, separators=(",", ":")).encode())
    claims = {"exp": TOKEN_EXPIRES, "iss": "prometheus", "sub": access_key}
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signed = f"{header}.{payload}".encode()
    signature = hmac.new(secret_key.encode(), signed, hashlib.sha512).digest()
    return f"{header}.{payload}.{_b64(signature)}"
