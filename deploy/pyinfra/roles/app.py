"""The app on api and worker hosts: its user, the release (a virtualenv installed offline
from the operator's wheelhouse, one directory per release id), its settings file and the
``appliance`` command for operators. Which release runs is the ``current`` link, switched by
the api and worker roles when they restart the services."""

from __future__ import annotations

from typing import Any

from pyinfra import host
from pyinfra.facts.files import File
from pyinfra.operations import apt, files, server

from fleet.defaults import PER_USER_CAPS
from fleet.model import Fleet, HostSpec
from fleet.wheelhouse import Release
from roles.common import APP_ROOT, once, put

APP_USER = "appliance"
DATA = "/var/lib/appliance"  # the app user's home and APPLIANCE_DATA_DIR (appliance.env.j2)
ENV_FILE = "/etc/appliance/appliance.env"
# The API's own settings (its Redis user, the lb hosts): roles/api.py writes it.
API_ENV_FILE = "/etc/appliance/api.env"
# The API drains while this exists (appliance/api/drain.py, roles/rolling.py).
DRAIN_FILE = "/run/appliance-api.drain"
KEEP_RELEASES = 3


def release_dir(release: Release) -> str:
    return f"{APP_ROOT}/releases/{release.id}"


def env_context(fleet: Fleet, me: HostSpec) -> dict[str, Any]:
    return {
        "app_user": APP_USER,
        "database_url": fleet.database_url,
        "database_read_url": fleet.database_read_url,
        "db_pool_size": fleet.get("db_pool_size", me),
        "listen_ip": me.ip,
        "api_port": fleet.get("api_port", me),
        "api_metrics_port": fleet.get("api_metrics_port", me),
        "api_workers": fleet.get("api_workers", me),
        "public_url": fleet.public_url,
        "sync_timeout_seconds": fleet.get("sync_timeout_seconds"),
        "max_upload_bytes": fleet.get("max_upload_bytes"),
        "requests_per_minute_per_address": fleet.get("requests_per_minute_per_address"),
        "requests_per_minute_per_key": fleet.get("requests_per_minute_per_key"),
        "conversions_per_minute_per_address": fleet.get("conversions_per_minute_per_address"),
        "per_user_caps": {name: fleet.get(name) for name in PER_USER_CAPS},
        # the lb hosts: the API takes the client's address from their X-Forwarded-For, so its
        # per-address limits count clients, not the lb
        "trusted_proxies": ",".join(h.ip for h in fleet.role("lb")),
        "s3": fleet.s3(),
        "secret_key": fleet.secrets["secret_key"],
        "master_keys": fleet.secrets["master_keys"],
        "sandbox": fleet.get("sandbox", me),
        "virus_scan": fleet.get("virus_scan", me),
        "audit_retention_days": fleet.get("audit_retention_days"),
        "job_retention_hours": fleet.get("job_retention_hours"),
        "idempotency_key_hours": fleet.get("idempotency_key_hours"),
        "engine_timeout_seconds": fleet.get("engine_timeout_seconds", me),
        "log_level": fleet.get("log_level", me),
        "drain_file": DRAIN_FILE,
    }


def install(fleet: Fleet, me: HostSpec, release: Release) -> Any:
    """Everything but the switch to the new release; returns the settings file's op."""
    apt.packages(
        name="Python venv, the engine sandbox and ACL tools",
        packages=["python3-venv", "bubblewrap", "util-linux", "acl"],
        no_recommends=True,
    )
    server.group(name="App group", group=APP_USER, system=True)
    server.user(
        name="App user",
        user=APP_USER,
        group=APP_USER,
        system=True,
        home=DATA,
        shell="/usr/sbin/nologin",
    )
    files.directory(name="App data", path=DATA, user=APP_USER, group=APP_USER, mode="750")
    # node_exporter (user prometheus, roles/base.py) reports a filesystem's size only when it
    # can statfs() its mount point, which needs search permission on every parent: a volume
    # mounted under here (the workers' job area, /var/lib/appliance/work) would otherwise be
    # reported as a device error, and ApplianceStorageAlmostFull never fire for it. Search
    # only, for that user only: the directory stays closed to everyone else.
    once(
        "app-data-searchable-by-node-exporter",
        "u:prometheus:x",
        f"setfacl -m u:prometheus:x {DATA}",
    )
    files.directory(name="App settings dir", path="/etc/appliance", group=APP_USER, mode="750")
    if not host.get_fact(File, path=f"{release_dir(release)}/.complete"):
        files.sync(
            name="Wheelhouse",
            src=str(release.wheelhouse),
            dest=f"{APP_ROOT}/wheelhouse",
            delete=True,
        )
        rel = release_dir(release)
        server.shell(
            name=f"Install release {release.id} offline from the wheelhouse",
            commands=[
                f"rm -rf {rel} && python3 -m venv {rel}",
                f"{rel}/bin/pip install -q --no-index --no-cache-dir"
                f" --find-links {APP_ROOT}/wheelhouse {APP_ROOT}/wheelhouse/{release.app_wheel}",
                f"touch {rel}/.complete",
                # Keep the newest few releases for a quick roll back.
                f"ls -1dt {APP_ROOT}/releases/*/ | tail -n +{KEEP_RELEASES + 1} | xargs -r rm -rf",
            ],
        )
    put(
        "pyinfra/templates/appliance-cli.sh.j2",
        "/usr/local/sbin/appliance",
        mode="755",
        app_user=APP_USER,
        app_root=APP_ROOT,
        api_env_file=API_ENV_FILE,
    )
    return put(
        "pyinfra/templates/appliance.env.j2",
        ENV_FILE,
        mode="640",
        group=APP_USER,
        **env_context(fleet, me),
    )


def switch(release: Release) -> Any:
    return files.link(
        name=f"Run release {release.id}",
        path=f"{APP_ROOT}/current",
        target=release_dir(release),
        force=True,
    )
