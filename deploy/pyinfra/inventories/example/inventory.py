"""An example fleet of seven VPS hosts; copy this directory, put in your hosts, and run

    scripts/deploy deploy/pyinfra/inventories/<yours>/inventory.py

Each group is a role (see the README's operator section); a host may be in several groups.
Per host: the SSH address (the name or ``ssh_hostname``), ``private_ip`` (the address the
other hosts reach it at), and SSH settings (``ssh_user``, ``ssh_key``, ...). The first db host
(or the one with ``db_primary: True``) is the primary; the others are streaming replicas.
"""

_ssh = {"ssh_user": "root", "ssh_key": "~/.ssh/id_ed25519"}

lb = [("lb1.example.com", {**_ssh, "private_ip": "10.0.0.10"})]
api = [
    ("api1.example.com", {**_ssh, "private_ip": "10.0.0.21"}),
    ("api2.example.com", {**_ssh, "private_ip": "10.0.0.22"}),
]
worker = [
    ("work1.example.com", {**_ssh, "private_ip": "10.0.0.31"}),
    ("work2.example.com", {**_ssh, "private_ip": "10.0.0.32"}),
]
db = [
    ("db1.example.com", {**_ssh, "private_ip": "10.0.0.41", "db_primary": True}),
    ("db2.example.com", {**_ssh, "private_ip": "10.0.0.42"}),
]
redis = [("db1.example.com", {**_ssh, "private_ip": "10.0.0.41"})]
storage = [("store1.example.com", {**_ssh, "private_ip": "10.0.0.51"})]
monitoring = [("lb1.example.com", {**_ssh, "private_ip": "10.0.0.10"})]
