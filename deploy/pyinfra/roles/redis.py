"""redis: Redis with AOF persistence, bound to loopback and the private address, with one ACL
user per role and the default user off (fleet/redis_acl.py); its exporter for Prometheus,
as a user that reads statistics only."""

from __future__ import annotations

from pyinfra.operations import apt

from fleet.model import Fleet, HostSpec
from fleet.redis_acl import acl_lines, user
from roles.common import put, restart_if


def conf_context(fleet: Fleet, me: HostSpec) -> dict[str, object]:
    return {
        "listen_ip": me.ip,
        "acl_lines": acl_lines(fleet.secrets),
        "maxmemory": fleet.get("redis_maxmemory", me),
    }


def exporter_context(fleet: Fleet, me: HostSpec) -> dict[str, object]:
    exporter = user("exporter")
    return {
        "listen_ip": me.ip,
        "redis_user": exporter.name,
        "password": fleet.secrets[exporter.secret],
    }


def apply(fleet: Fleet, me: HostSpec) -> None:
    apt.packages(
        name="Redis and its exporter",
        packages=["redis-server", "prometheus-redis-exporter"],
        no_recommends=True,
    )
    conf = put(
        "pyinfra/templates/redis.conf.j2",
        "/etc/redis/redis.conf",
        mode="640",
        user="redis",
        group="redis",
        **conf_context(fleet, me),
    )
    exporter = put(
        "pyinfra/templates/redis-exporter.default.j2",
        "/etc/default/prometheus-redis-exporter",
        mode="640",
        group="prometheus",
        **exporter_context(fleet, me),
    )
    restart_if("redis-server", conf)
    restart_if("prometheus-redis-exporter", exporter)
