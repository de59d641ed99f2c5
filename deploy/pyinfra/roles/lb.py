"""lb: nginx in front of every api host (keepalive upstream, passive health checks, retries
of idempotent requests on another host), TLS with the operator's certificate or a self-signed
one made on the first deploy, the app's body limit, streaming uploads, a coarse per-address
rate limit in front of the app's own (the app reads client addresses from X-Forwarded-For,
trusting the lb hosts only: roles/api.py), access logs with request ids; and the nginx
exporter. (The API's port serves no /metrics: Prometheus scrapes each api host's metrics
listener directly.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pyinfra import host
from pyinfra.facts.files import File
from pyinfra.operations import apt, files, server

from fleet.model import Fleet, HostSpec
from roles import api
from roles.common import put, put_text, restart_if

TLS_DIR = "/etc/nginx/tls"
CERT = f"{TLS_DIR}/appliance.crt"
KEY = f"{TLS_DIR}/appliance.key"
MULTIPART_SLACK = 1024 * 1024  # as the app: room for the form around the file


def site_context(fleet: Fleet) -> dict[str, Any]:
    return {
        "cert_path": CERT,
        "key_path": KEY,
        "client_max_body_size": int(fleet.get("max_upload_bytes")) + MULTIPART_SLACK,
        "rate_per_second": fleet.get("rate_limit_per_second"),
        "rate_burst": fleet.get("rate_limit_burst"),
        "sync_prefix": "/sync",
        "sync_read_timeout": int(fleet.get("sync_timeout_seconds")) + 15,
        "api_read_timeout": int(fleet.get("api_read_timeout_seconds")),
    }


def upstream_context(fleet: Fleet) -> dict[str, Any]:
    port = fleet.get("api_port")
    return {
        "upstream": [{"ip": h.ip, "port": port} for h in fleet.role("api")],
        "keepalive_seconds": api.UPSTREAM_KEEPALIVE_SECONDS,
        "max_fails": api.UPSTREAM_MAX_FAILS,
        "fail_timeout_seconds": api.UPSTREAM_FAIL_TIMEOUT_SECONDS,
    }


def tls(fleet: Fleet, me: HostSpec) -> list[Any]:
    files.directory(name="TLS dir", path=TLS_DIR, mode="700")
    cert_file, key_file = fleet.get("tls_cert_file", me), fleet.get("tls_key_file", me)
    if cert_file and key_file:
        return [
            put_text(Path(cert_file).read_text(), CERT),
            put_text(Path(key_file).read_text(), KEY, mode="600"),
        ]
    if host.get_fact(File, path=CERT):
        return []
    name = me.data.get("ssh_hostname") or me.name
    return [
        server.shell(
            name="Self-signed TLS certificate (first deploy; set tls_cert_file to replace it)",
            commands=[
                f"openssl req -x509 -newkey rsa:2048 -nodes -days 825 -keyout {KEY} -out {CERT}"
                f" -subj '/CN={name}' -addext 'subjectAltName=DNS:{name},IP:{me.ip}'"
                " 2>/dev/null || openssl req -x509 -newkey rsa:2048 -nodes -days 825"
                f" -keyout {KEY} -out {CERT} -subj '/CN={name}'",
                f"chmod 600 {KEY}",
            ],
        )
    ]


def apply(fleet: Fleet, me: HostSpec) -> None:
    apt.packages(
        name="nginx and its exporter",
        packages=["nginx", "prometheus-nginx-exporter"],
        no_recommends=True,
    )
    default_site = files.link(
        name="No default site", path="/etc/nginx/sites-enabled/default", present=False
    )
    certs = tls(fleet, me)
    site = put("nginx/appliance.conf.j2", "/etc/nginx/conf.d/appliance.conf", **site_context(fleet))
    upstream = put("nginx/appliance-upstream.conf.j2", api.UPSTREAM_FILE, **upstream_context(fleet))
    changes = [default_site, site, upstream, *certs]
    server.shell(
        name="Check the nginx configuration",
        commands=["nginx -t -q"],
        _if=lambda: any(c.did_change() for c in changes),
    )
    restart_if("nginx", *changes, reload=True)
    exporter = put(
        "pyinfra/templates/nginx-exporter.default.j2",
        "/etc/default/prometheus-nginx-exporter",
        listen_ip=me.ip,
    )
    restart_if("prometheus-nginx-exporter", exporter)
