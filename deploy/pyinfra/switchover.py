"""A planned switchover of the fleet's database (scripts/deploy switchover INVENTORY runs it):

    pyinfra INVENTORY deploy/pyinfra/switchover.py

On the monitor's host, pg_autoctl asks pg_auto_failover's monitor to hand the primary over to
its synchronous standby: the primary stops taking writes, the standby catches up and is
promoted, the old primary follows it. Writes fail for a few seconds (the app answers 503 with
Retry-After); no commit is lost. Nothing else on the fleet changes, and the deploy needs no
change afterwards: the app's URLs find the new primary, and backups run wherever it is.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pyinfra import host, inventory
from pyinfra.operations import server

from fleet.model import fleet_from_pyinfra
from roles import db

fleet = fleet_from_pyinfra(inventory, {})
if host.name == fleet.db_monitor.name:
    server.shell(name="Switch the database primary over to its standby",
                 commands=[db.switchover_command(fleet)])  # fmt: skip
