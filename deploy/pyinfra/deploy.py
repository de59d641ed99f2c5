"""The one deploy of the appliance fleet (scripts/deploy INVENTORY runs it):

    pyinfra INVENTORY deploy/pyinfra/deploy.py

Every role is staged (preflight checks, install, configure, activate) and idempotent: a
second run changes nothing. Services restart only when what they read changed. The order
below matters across hosts: pyinfra runs each operation on every host before the next, so
the failover monitor is up before the db nodes register with it, the first primary before
the standbys clone it, migrations run before APIs restart, and
the lb drains each api host in turn on upgrades (roles/rolling.py).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pyinfra import host, inventory

from fleet.context import current
from roles import (
    api,
    app,
    backup,
    base,
    db,
    lb,
    monitoring,
    preflight,
    redis,
    rolling,
    storage,
    worker,
)
from roles.common import barrier

run = current(inventory)
fleet, release = run.fleet, run.release
me = fleet.host(host.name)

# barrier(): every host reaches it from the same line, so stages run in order across hosts.
preflight.apply(fleet, me)
barrier("preflight passed on every host")
base.apply(fleet, me)
if me == fleet.db_monitor:
    db.monitor(fleet)
barrier("db monitor ready")
if me.has("db"):
    db.apply(fleet, me)
barrier("db primary ready")
if me.has("db"):
    db.join(fleet, me)
if me.has("redis"):
    redis.apply(fleet, me)
if me.has("storage"):
    storage.apply(fleet, me)
barrier("data services ready")
if me.has("db"):
    backup.activate(fleet, me, db.paths(fleet)["service"])
if me.has("api") or me.has("worker"):
    env = app.install(fleet, me, release)
if me.has("api"):
    api.apply(fleet, me, release, run.rolling, env)
barrier("release installed, migrations applied")
if run.rolling and me == fleet.role("lb")[0]:
    rolling.apply(fleet, inventory, release)
barrier("api hosts on the release")
if me.has("worker"):
    worker.apply(fleet, me, release, env)
if me.has("lb"):
    lb.apply(fleet, me)
if me.has("monitoring"):
    monitoring.apply(fleet, me)
