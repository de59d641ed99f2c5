"""redis: Redis with AOF persistence, bound to loopback and the private address, with a
password; its exporter for Prometheus."""

from __future__ import annotations

from pyinfra.operations import apt

from fleet.model import Fleet, HostSpec
from roles.common import put, restart_if


def apply(fleet: Fleet, me: HostSpec) -> None:
    apt.packages(
        name="Redis and its exporter",
        packages=["redis-server", "prometheus-redis-exporter"],
        no_recommends=True,
    )
    password = fleet.secrets["redis_password"]
    conf = put(
        "pyinfra/templates/redis.conf.j2",
        "/etc/redis/redis.conf",
        mode="640",
        user="redis",
        group="redis",
        listen_ip=me.ip,
        password=password,
        maxmemory=fleet.get("redis_maxmemory", me),
    )
    exporter = put(
        "pyinfra/templates/redis-exporter.default.j2",
        "/etc/default/prometheus-redis-exporter",
        mode="640",
        group="prometheus",
        listen_ip=me.ip,
        password=password,
    )
    restart_if("redis-server", conf)
    restart_if("prometheus-redis-exporter", exporter)
