"""A fleet built from plain data (no pyinfra state, no hosts): the roles' files are rendered
from it and checked by the real tools (nginx -t, systemd-analyze verify, promtool, nft -c,
redis-server, postgres)."""

from __future__ import annotations

import base64
import sys
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parents[3] / "deploy" / "pyinfra"
sys.path.insert(0, str(DEPLOY))

from fleet.model import Fleet, HostSpec  # noqa: E402
from fleet.secrets import NAMES  # noqa: E402

# The lab's layout: nine roles on six hosts.
LAYOUT = {
    "h1": ("10.200.1.1", {"lb", "monitoring"}),
    "h2": ("10.200.1.2", {"api", "redis"}),
    "h3": ("10.200.1.3", {"api"}),
    "h4": ("10.200.1.4", {"worker", "db"}),
    "h5": ("10.200.1.5", {"worker"}),
    "h6": ("10.200.1.6", {"db"}),
}


def make_fleet(**settings: object) -> Fleet:
    hosts = []
    for name, (ip, roles) in LAYOUT.items():
        data = {"private_ip": ip, **settings}
        if name == "h4":
            data["db_primary"] = True
        hosts.append(HostSpec(name, frozenset(roles), data))
    secrets = {n: f"s3cret-{n.replace('_', '-')}" for n in NAMES}
    # the master keys must be in the form the app checks at start: id:base64url of 32 bytes
    secrets["master_keys"] = "mk-test:" + base64.urlsafe_b64encode(b"k" * 32).decode().rstrip("=")
    return Fleet(hosts, secrets)


@pytest.fixture
def fleet() -> Fleet:
    return make_fleet(
        s3_external={"endpoint": "10.200.0.1:9000", "access_key": "a", "secret_key": "b"},
        engine_families=["images", "data"],
    )
