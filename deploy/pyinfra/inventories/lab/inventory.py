"""The lab's inventory: six systemd-nspawn hosts started by the test harness
(tests/deploy/lab). The harness writes the fleet it started to a JSON file and names it in
``APPLIANCE_LAB_FLEET``:

    {"hosts": [{"name": "h1", "ip": "10.x.y.z", "roles": ["lb", "monitoring"],
                "ssh": {"ssh_hostname": ..., "ssh_user": "root", "ssh_key": ..., ...}}, ...],
     "data": {fleet settings that depend on the run, e.g. s3_external}}

Fixed lab settings are in group_data/all.py next to this file.
"""

import json
import os
from pathlib import Path

_fleet = json.loads(Path(os.environ["APPLIANCE_LAB_FLEET"]).read_text())
_groups: dict[str, list] = {}
for _h in _fleet["hosts"]:
    _data = {**_fleet.get("data", {}), **_h.get("ssh", {}), "private_ip": _h["ip"]}
    _data.update(_h.get("data", {}))
    for _role in _h["roles"]:
        _groups.setdefault(_role, []).append((_h["name"], _data))

lb = _groups.get("lb", [])
api = _groups.get("api", [])
worker = _groups.get("worker", [])
db = _groups.get("db", [])
redis = _groups.get("redis", [])
storage = _groups.get("storage", [])
monitoring = _groups.get("monitoring", [])
