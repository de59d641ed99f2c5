"""The lab fleet the deploy tests share: six real Debian hosts provisioned from bare with the
one command (scripts/deploy), storage the harness's Swift+s3api as an external S3 endpoint.

Roles: h1 lb + monitoring; h2 api + redis; h3 api; h4 worker + db primary; h5 worker; h6 db
replica. The ``fleet`` fixture is registered in conftest.py, so every module of the tier uses
one fleet (test_backups.py drills on the one test_fleet.py drives): a second fleet would
deploy again, for minutes, into the same backup repository, whose stanza is the first one's.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.deploy.lab import Lab
from tests.harness.s3server import S3Server

REPO = Path(__file__).resolve().parents[2]
LAYOUT = {
    "h1": ["lb", "monitoring"],
    "h2": ["api", "redis"],
    "h3": ["api"],
    "h4": ["worker", "db"],
    "h5": ["worker"],
    "h6": ["db"],
}


@dataclass
class Fleet:
    lab: Lab
    url: str  # the lb's https address, forwarded to 127.0.0.1
    env: dict[str, str]
    inventory: Path
    first_log: str
    first_seconds: float

    def deploy(
        self,
        extra_env: dict[str, str] | None = None,
        command: tuple[str, ...] = (),
        options: tuple[str, ...] = (),
    ) -> tuple[str, float]:
        """``scripts/deploy [command] INVENTORY [pyinfra options]``: its log and seconds
        (fails if it failed)."""
        started = time.monotonic()
        done = subprocess.run(
            [str(REPO / "scripts" / "deploy"), *command, str(self.inventory), *options],
            env={**self.env, **(extra_env or {})},
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=1500,
        )
        assert done.returncode == 0, done.stdout[-6000:]
        return done.stdout, time.monotonic() - started

    def client(self, key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, verify=False, timeout=60)

    def db_primary(self) -> str:
        """The db host that takes writes now: pg_auto_failover moves the primary (a drill
        kills h4, the first primary), so nothing asks a fixed host for the database."""
        for name in (n for n, roles in LAYOUT.items() if "db" in roles):
            if self.lab.host(name).running and self.in_recovery(name) == "f":
                return name
        raise AssertionError("no db host takes writes")

    def in_recovery(self, name: str) -> str:
        """``pg_is_in_recovery()`` on db host ``name``: "t" a standby, "f" the primary, ""
        no answer."""
        ask = "cd / && runuser -u postgres -- psql -XAtc 'SELECT pg_is_in_recovery()'"
        return self.lab.run(name, ask, check=False, timeout=30).stdout.strip()

    def key(self) -> str:
        out = self.lab.run("h2", f"appliance keys create --user {uuid.uuid4().hex[:8]}@lab.test")
        return out.stdout.strip().splitlines()[-1]


def record_time(name: str, seconds: float) -> None:
    out = REPO / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    path = out / "deploy-times.json"
    times = json.loads(path.read_text()) if path.exists() else {}
    times[name] = round(seconds, 1)
    path.write_text(json.dumps(times, indent=2))


@pytest.fixture(scope="session")
def fleet(lab_factory, s3_server: S3Server, tmp_path_factory) -> Iterator[Fleet]:
    fleet = provision(lab_factory(list(LAYOUT)), s3_server, tmp_path_factory.mktemp("fleet"))
    record_time("provision_from_bare_seconds", fleet.first_seconds)
    yield fleet


def provision(
    lab: Lab, s3_server: S3Server, work: Path, settings: dict[str, object] | None = None
) -> Fleet:
    """The fleet of ``LAYOUT`` on ``lab``'s hosts (booted, bare), deployed with the one
    command, its settings and secrets under ``work``; storage is ``s3_server``. ``settings``:
    fleet settings (group data) beyond the lab's own."""
    s3 = lab.expose(int(s3_server.endpoint.rsplit(":", 1)[1]))
    lb_port = lab.forward("h1", 443)
    spec = {
        "hosts": [
            {"name": n, "ip": lab.ip(n), "roles": roles, "ssh": lab.host_data(n)}
            for n, roles in LAYOUT.items()
        ],
        "data": {
            "public_url": f"https://127.0.0.1:{lb_port}",
            # No admin_networks: SSH is let in from the address the deploy comes from (the
            # lab bridge, through which every lab.run and pyinfra connection goes).
            "s3_external": {
                "endpoint": f"{s3.ip}:{s3.port}",
                "access_key": s3_server.access_key,
                "secret_key": s3_server.secret_key,
                "bucket": f"lab{uuid.uuid4().hex[:10]}",
                "region": s3_server.region,
                # presigned downloads: the test fetches them from the root namespace
                "public_url": f"http://{s3_server.endpoint}",
            },
            **(settings or {}),
        },
    }
    (work / "fleet.json").write_text(json.dumps(spec))
    env = {
        **os.environ,
        "APPLIANCE_LAB_FLEET": str(work / "fleet.json"),
        "APPLIANCE_DEPLOY_SECRETS_DIR": str(work / "secrets"),
    }
    fleet = Fleet(lab, f"https://127.0.0.1:{lb_port}", env,
                  REPO / "deploy/pyinfra/inventories/lab/inventory.py", "", 0.0)  # fmt: skip
    fleet.first_log, fleet.first_seconds = fleet.deploy()
    return fleet
