"""api: appliance-api.service (granian) on the new release, migrations once per release, and
the switch to it: directly on a fleet's first deploy, else one api host at a time, each
draining itself first (roles/rolling.py)."""

from __future__ import annotations

import hashlib
from typing import Any

from pyinfra.facts.files import File, Link, Sha256File
from pyinfra.operations import server

from fleet.model import Fleet, HostSpec
from fleet.render import render
from fleet.wheelhouse import Release
from roles import app
from roles.common import APP_ROOT, once, put_text, restart_if

UNIT = "/etc/systemd/system/appliance-api.service"
UPSTREAM_FILE = "/etc/nginx/conf.d/appliance-upstream.conf"
# nginx's view of the api hosts (the lb's upstream), which the rolling drain times against.
# nginx closes an idle connection to an api host after this long, before granian would.
UPSTREAM_KEEPALIVE_SECONDS = 20
# After this many failed connects within the timeout, nginx skips a host for the timeout.
UPSTREAM_MAX_FAILS = 2
UPSTREAM_FAIL_TIMEOUT_SECONDS = 10


def unit_text(fleet: Fleet, me: HostSpec) -> str:
    return render(
        "systemd/appliance-api.service.j2",
        app_user=app.APP_USER,
        app_root=APP_ROOT,
        memory_max=fleet.get("api_memory_max", me),
        api_env_file=app.API_ENV_FILE,
    )


def api_env_text(fleet: Fleet) -> str:
    """The API's own settings: its Redis user (the lb hosts it takes client addresses from are
    in appliance.env)."""
    return render("pyinfra/templates/api.env.j2", redis_url=fleet.redis_url("api"))


def wait_ready_command(fleet: Fleet, me: HostSpec, seconds: int = 90) -> str:
    """A subshell, so it can be chained with ``&&`` (it exits when done)."""
    url = f"http://{me.ip}:{fleet.get('api_port', me)}/health/ready"
    return (
        f"(for i in $(seq 1 {seconds}); do curl -fsS -o /dev/null --max-time 2 {url} && exit 0;"
        f" sleep 1; done; echo 'api not ready: {url}' >&2; exit 1)"
    )


def rolling_enabled(fleet: Fleet, inventory: Any) -> bool:
    """Drain-and-restart needs the lb's nginx already serving (not on the first deploy)."""
    lb = inventory.get_host(fleet.role("lb")[0].name)
    return bool(lb.get_fact(File, path=UPSTREAM_FILE))


def needs_restart(fleet: Fleet, target: Any, release: Release) -> bool:
    """Whether api host ``target`` (a pyinfra Host) runs something other than this deploy's
    release, unit and settings (facts read before any change)."""
    me = fleet.host(target.name)
    link = target.get_fact(Link, path=f"{APP_ROOT}/current") or {}
    if link.get("link_target") != app.release_dir(release):
        return True
    want = {
        UNIT: unit_text(fleet, me),
        app.API_ENV_FILE: api_env_text(fleet),
        app.ENV_FILE: render("pyinfra/templates/appliance.env.j2", **app.env_context(fleet, me)),
    }
    return any(
        target.get_fact(Sha256File, path=path) != hashlib.sha256(text.encode()).hexdigest()
        for path, text in want.items()
    )


def apply(fleet: Fleet, me: HostSpec, release: Release, rolling: bool, env: Any) -> None:
    """``env`` is app.install's settings-file operation."""
    unit = put_text(unit_text(fleet, me), UNIT)  # the texts needs_restart compares with
    api_env = put_text(api_env_text(fleet), app.API_ENV_FILE, mode="600")
    if me == fleet.role("api")[0]:
        # Migrations are additive, so the old release keeps working while they apply.
        once(
            "migrate",
            release.id,
            f"set -a; . {app.ENV_FILE}; set +a; runuser -u {app.APP_USER} --"
            f" {app.release_dir(release)}/bin/appliance migrate",
        )
    if not rolling:
        link = app.switch(release)
        restart_if("appliance-api", link, env, unit, api_env)
        server.shell(
            name="API ready",
            commands=[wait_ready_command(fleet, me)],
            _if=lambda: any(op.did_change() for op in (link, env, unit, api_env)),
        )
    else:
        # roles/rolling.py switches and restarts this host while the lb drains it.
        restart_if("appliance-api")
