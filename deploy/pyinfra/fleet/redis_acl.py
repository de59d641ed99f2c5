"""Redis ACL users, one per role, each allowed only the commands and keys that role sends.

What the app sends (read from the code; the lab checks ACL LOG stays empty after a fleet has
converted, and tests/deploy/test_redis_acl.py drives each path against a real Redis):

- Dramatiq's Redis broker (API: enqueue; workers: fetch, ack, nack, requeue, maintenance)
  runs one Lua script, ``dispatch.lua``, by EVALSHA (SCRIPT LOAD when Redis lost it) with the
  key ``dramatiq``; the script's own commands touch only ``dramatiq:*`` keys, but its
  maintenance lists dead workers' ack sets with KEYS.
- The dispatcher's pending sets ``appliance:pending:<queue>`` (jobs/dispatch.py): ZADD
  (whoever enqueues), ZREM (a worker picking a message up), ZMSCORE and INFO server (the
  reconciler, which distrusts entries older than the server's start).
- The API's queue gauges at scrape time (metrics/scrape.py): ZCOUNT, ZRANGE on the pending
  sets, LLEN on ``dramatiq:<queue>`` and ``.DQ``.
- Rate limits (security/limits.py, API only): INCRBY and EXPIRE NX in MULTI/EXEC, GET, on
  ``appliance:ratelimit:*``; the open sync waits per user (``Slots``) run a Lua script by
  EVALSHA (INCR, INCRBY, EXPIRE, DECR) and give a slot back by another (GET, DECR).
- Task ends (conversions/events.py): workers, and the API for the ends it makes itself (an
  upload's end, a cancel), PUBLISH on ``appliance:events``; each API process SUBSCRIBEs to it
  and to ``appliance:revocations`` (api/events.py).
- Revocations (security/revocation.py): the ``appliance`` command (users disable, keys
  revoke) PUBLISHes on ``appliance:revocations``; on api hosts it runs as the api user.
- Job status version tokens (db/changes.py, conversions/status_cache.py): whoever writes
  jobs and tasks (API, workers, the ``appliance`` command) SETs ``appliance:status:<job>``
  (with EX, in a pipeline); the API reads them with SET NX GET EX.
- The API's admission check counts due tasks (ZCOUNT on the pending sets, as the gauges).
- Web UI sessions (web/sessions.py, API only): SET with EX, GET, DEL on
  ``appliance:web:session:*``.
- Readiness probes: PING.

The exporter user gets statistics (INFO, CONFIG GET, SLOWLOG, LATENCY) and no key at all.
``admin`` may do anything; its password is only in the operator's secrets file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

EVENTS_CHANNEL = "appliance:events"
REVOCATIONS_CHANNEL = "appliance:revocations"
# The commands dramatiq's dispatch.lua calls (dramatiq 1.x, brokers/redis/dispatch.lua).
BROKER_SCRIPT = (
    *("del", "hdel", "hexists", "hget", "hlen", "hmget", "hset", "keys", "lpop", "rpush"),
    *("sadd", "scard", "smembers", "srem", "zadd", "zrangebyscore", "zrem"),
)


@dataclass(frozen=True)
class Grant:
    """Commands allowed on keys matching ``keys`` (a Redis 7 selector when not the first)."""

    keys: tuple[str, ...]
    commands: tuple[str, ...]
    channels: tuple[str, ...] = ()

    def rules(self) -> str:
        return " ".join([*(f"~{k}" for k in self.keys), *(f"&{c}" for c in self.channels),
                         *(f"+{c}" for c in self.commands)])  # fmt: skip


BROKER = Grant(("dramatiq", "dramatiq:*"), ("evalsha", "script|load", *BROKER_SCRIPT))
PENDING = Grant(("appliance:pending:*",), ("zadd", "zrem", "zmscore"))
QUEUE_GAUGES = (
    Grant(("appliance:pending:*",), ("zcount", "zrange")),
    Grant(("dramatiq:*",), ("llen",)),
)
RATE_LIMITS = Grant(
    ("appliance:ratelimit:*",),
    (
        "incrby",
        "expire",
        "get",
        "multi",
        "exec",
        "evalsha",
        "script|load",
        "incr",
        "decr",
        "decrby",
    ),
)

STATUS_TOKENS = Grant(("appliance:status:*",), ("set",))
WEB_SESSIONS = Grant(("appliance:web:session:*",), ("set", "get", "del"))

# The api user announces revocations and the task ends it makes itself (an upload's end, a
# cancel: jobs/dispatch.py's announce); workers announce task ends only.
REVOKE = Grant((), ("publish",), (REVOCATIONS_CHANNEL, EVENTS_CHANNEL))


@dataclass(frozen=True)
class User:
    name: str
    secret: str  # its password's name in the fleet's secrets (fleet/secrets.py)
    grants: tuple[Grant, ...] = ()
    commands: tuple[str, ...] = ()  # keyless commands
    channels: tuple[str, ...] = ()  # pub/sub channels
    everything: bool = False

    def rules(self, password: str) -> str:
        digest = hashlib.sha256(password.encode()).hexdigest()
        head = [f"user {self.name} on #{digest} resetkeys resetchannels"]
        if self.everything:
            return " ".join([*head, "~* &* +@all"])
        head += ["-@all", *(f"&{c}" for c in self.channels), *(f"+{c}" for c in self.commands)]
        first, *rest = self.grants or (Grant((), ()),)
        return " ".join([*head, first.rules(), *(f"({g.rules()})" for g in rest)]).rstrip()


USERS = (
    User(
        "api",
        "redis_api_password",
        (BROKER, PENDING, *QUEUE_GAUGES, RATE_LIMITS, STATUS_TOKENS, WEB_SESSIONS, REVOKE),
        ("ping", "subscribe", "unsubscribe"),
        (EVENTS_CHANNEL, REVOCATIONS_CHANNEL),
    ),
    User(
        "worker",
        "redis_worker_password",
        (BROKER, PENDING, STATUS_TOKENS),
        ("ping", "publish", "info"),  # info: when Redis started (the reconciler's check)
        (EVENTS_CHANNEL,),
    ),
    User(
        "exporter",
        "redis_exporter_password",
        commands=(
            "ping",
            "info",
            "config|get",
            "slowlog|get",
            "slowlog|len",
            "latency|latest",
            "client|setname",
        ),  # exactly what redis_exporter 1.45 sends
    ),
    User("admin", "redis_admin_password", everything=True),
)


def user(name: str) -> User:
    return next(u for u in USERS if u.name == name)


def acl_lines(secrets: dict[str, str]) -> list[str]:
    """redis.conf ``user`` lines: the default user off, then each role's user."""
    return ["user default off resetpass resetkeys resetchannels -@all"] + [
        u.rules(secrets[u.secret]) for u in USERS
    ]
