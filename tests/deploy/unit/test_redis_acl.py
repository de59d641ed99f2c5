"""The fleet's Redis ACL users against a real redis-server started from the rendered
redis.conf: every Redis path of the app (the Dramatiq broker both ways, the dispatcher's
pending sets, the queue gauges, rate limits, task-end events, readiness) works as the user
its role gets, nothing the app sends is refused (ACL LOG stays empty), and the exporter reads
statistics but no key and can change nothing."""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import dramatiq
import httpx
import pytest
import redis
import redis.asyncio as aioredis
from dramatiq.brokers.redis import MAINTENANCE_SCALE
from fleet.redis_acl import USERS
from fleet.render import render
from roles import redis as redis_role

from appliance.api.events import Notifier
from appliance.conversions.events import announce
from appliance.conversions.status_cache import StatusCache
from appliance.conversions.task import Ready
from appliance.db.changes import LoopStatusTokens, StatusTokens
from appliance.db.redis_pipe import PipelinedRedis
from appliance.errors import TooManyRequests
from appliance.jobs.broker import declare_actors, make_broker, make_dispatcher
from appliance.local_services import free_port
from appliance.metrics import scrape
from appliance.security import revocation
from appliance.security.limits import Limiter, Rule, Slots
from appliance.settings import Settings
from appliance.web.sessions import SessionStore


class Server:
    def __init__(self, port: int, secrets: dict[str, str]) -> None:
        self.port, self.secrets = port, secrets

    def url(self, user: str) -> str:
        return f"redis://{user}:{self.secrets[f'redis_{user}_password']}@127.0.0.1:{self.port}/0"

    def client(self, user: str) -> redis.Redis:
        return redis.Redis.from_url(self.url(user))

    def refusals(self) -> list[dict]:
        return self.client("admin").acl_log(100)


@pytest.fixture
def server(fleet, tmp_path: Path) -> Iterator[Server]:
    port = free_port()
    conf = render("pyinfra/templates/redis.conf.j2",
                  **redis_role.conf_context(fleet, fleet.host("h2")))  # fmt: skip
    (tmp_path / "redis.conf").write_text(conf)
    proc = subprocess.Popen(
        ["redis-server", str(tmp_path / "redis.conf"), "--port", str(port), "--dir",
         str(tmp_path), "--pidfile", str(tmp_path / "r.pid"), "--logfile", "",
         "--supervised", "no", "--bind", "127.0.0.1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    srv = Server(port, fleet.secrets)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                srv.client("admin").ping()
                break
            except redis.ConnectionError:
                assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
                assert time.monotonic() < deadline, "redis-server did not answer"
                time.sleep(0.05)
        yield srv
    finally:
        proc.terminate()
        proc.wait(10)


def _settings(server: Server, user: str) -> Settings:
    return Settings.from_env({"APPLIANCE_REDIS_URL": server.url(user)})


def test_the_default_user_is_off_and_each_role_has_its_user(server):
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=server.port).ping()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=server.port, password=server.secrets["redis_api_password"]).ping()
    names = {line.split()[1] for line in server.client("admin").acl_list()}
    assert names == {"default", *(u.name for u in USERS)}


def test_the_broker_dispatcher_and_events_work_as_the_api_and_worker_users(server):
    api = _settings(server, "api")
    api_broker = make_broker(api)
    api_dispatch = make_dispatcher(api, api_broker)
    worker = _settings(server, "worker")
    worker_broker = make_broker(worker)
    # Every fetch runs the broker's maintenance, with a dead worker's acks to requeue (KEYS,
    # SMEMBERS, ...), as a worker does now and then.
    worker_broker.maintenance_chance = MAINTENANCE_SCALE
    server.client("admin").zadd("dramatiq:__heartbeats__", {"dead-worker": 0})
    server.client("admin").sadd("dramatiq:__acks__.dead-worker.light", "lost-message")
    worker_dispatch = make_dispatcher(worker, worker_broker)
    ran: list[str] = []
    done = threading.Event()

    def run(task_id: str, queue: str) -> None:
        ran.append(task_id)
        announce(worker_dispatch.redis, task_id)
        if task_id == "fails":
            raise RuntimeError("a task that fails is nacked to the dead-letter queue")
        if len(ran) == 3:
            done.set()

    declare_actors(worker_broker, run, worker_dispatch)
    declare_actors(api_broker, run, api_dispatch)
    runner = dramatiq.Worker(worker_broker, worker_threads=1, worker_timeout=100)
    runner.start()
    try:
        api_dispatch.dispatch([Ready("now", "light"), Ready("fails", "light")])
        api_dispatch.dispatch([Ready("later", "light")], delay_ms=200)
        assert done.wait(20), ran
    finally:
        runner.stop()
        api_dispatch.close()
        worker_dispatch.close()
    assert sorted(ran) == ["fails", "later", "now"]
    assert not server.client("admin").exists("dramatiq:__acks__.dead-worker.light")
    reconciler = make_dispatcher(worker, make_broker(worker))
    assert reconciler.pending("light", ["now", "unknown"], 60) == [False, False]
    assert server.refusals() == []


def test_rate_limits_gauges_and_the_event_subscription_work_as_the_api_user(server):
    async def scenario() -> None:
        client = aioredis.Redis.from_url(server.url("api"))
        limiter = Limiter(client)
        rule = Rule("requests-per-address", "ip", 2)
        assert (await limiter.count(rule, "10.0.0.9")).allowed
        assert (await limiter.count_all([(rule, "10.0.0.9", 2)]))[0].allowed is False
        assert (await limiter.peek(rule, "10.0.0.9")).used == 3
        slots = Slots(client, Rule("sync-waits-per-user", "user", 1), hold=5, what="waits")
        async with slots.slot("user-1"):
            with pytest.raises(TooManyRequests):
                async with slots.slot("user-1"):
                    pass
        async with slots.slot("user-1"):  # given back
            pass
        notifier = Notifier(server.url("api"))
        revoked: list[list[str]] = []
        notifier.on_revoked = revoked.append
        await notifier.start()
        await notifier.ping()
        for _ in range(100):  # until subscribed to both channels
            if notifier.hearing_revocations:
                break
            await asyncio.sleep(0.05)
        assert notifier.hearing_revocations
        # the `appliance` command on an api host revokes as the api user
        assert revocation.announce(server.url("api"), users=[uuid.UUID(int=7)])
        key = uuid.uuid4().hex
        waiting = asyncio.create_task(notifier.wait(key, 10))
        started = time.monotonic()
        while time.monotonic() - started < 5 and not waiting.done():
            await asyncio.sleep(0.1)  # until subscribed, then a worker announces
            announce(server.client("worker"), key)
        await waiting
        assert time.monotonic() - started < 5, "the announcement never arrived"
        assert revoked == [[f"user:{uuid.UUID(int=7)}"]]
        await notifier.stop()
        await client.aclose()

    asyncio.run(scenario())
    # the API's metrics listener reads the queue gauges at scrape time
    gauges = scrape.queues(server.client("api"), {"light": "appliance:pending:light"})
    assert set(gauges) == {"light"}
    assert server.refusals() == []


def test_status_tokens_and_the_backlog_work_as_the_api_and_worker_users(server):
    admin, seen = server.client("admin"), set()

    async def renew_as_the_api() -> None:  # through the event loop's client, as the API does
        tokens = LoopStatusTokens.at(server.url("api"), 24)
        await tokens.renew(["job-1", "job-2"])
        await tokens.client.aclose()

    for user in ("api", "worker"):  # both write jobs and tasks
        if user == "api":
            asyncio.run(renew_as_the_api())
        else:
            StatusTokens(server.client(user)).renew(["job-1", "job-2"])
        tokens = admin.mget("appliance:status:job-1", "appliance:status:job-2")
        assert None not in tokens and not seen & set(tokens)  # written, new each time
        seen |= set(tokens)

    async def read() -> bytes | None:
        client = PipelinedRedis(server.url("api"))  # the API's own client, logged in as api
        cache = StatusCache(client, 1 << 20, 60)
        token = await cache._token("job-1")
        await client.aclose()
        return token

    assert asyncio.run(read()) == admin.get("appliance:status:job-1")
    api = make_dispatcher(_settings(server, "api"), make_broker(_settings(server, "api")))
    assert api.backlog(["light", "office"]) == {"light": 0, "office": 0}
    assert server.refusals() == []


def test_web_sessions_work_as_the_api_user(server):
    async def scenario() -> None:
        client = aioredis.Redis.from_url(server.url("api"))
        store = SessionStore(client, 60)
        token, session = await store.create(uuid.uuid4(), "a@example.test")
        assert await store.load(token) == session
        await store.drop(token)
        assert await store.load(token) is None
        await client.aclose()

    asyncio.run(scenario())
    assert server.refusals() == []


@pytest.mark.parametrize(
    "command",
    [
        ("FLUSHALL",),
        ("LRANGE", "dramatiq:light", "0", "-1"),
        ("GET", "appliance:ratelimit:x"),
        ("KEYS", "*"),
        ("CONFIG", "SET", "maxmemory", "1"),
        ("PUBLISH", "appliance:events", "x"),
        ("ACL", "LIST"),
    ],
)
def test_the_exporter_user_can_read_no_key_and_change_nothing(server, command):
    with pytest.raises(redis.exceptions.NoPermissionError):
        server.client("exporter").execute_command(*command)


def test_both_announce_task_ends_and_only_the_api_user_revocations(server):
    with pytest.raises(redis.exceptions.NoPermissionError):
        server.client("worker").publish("appliance:revocations", "x")
    for user in ("api", "worker"):  # the api announces the ends it makes (uploads, cancels)
        server.client(user).publish("appliance:events", "x")
    refused = [r for r in server.refusals() if r.get("object") == "appliance:events"]
    assert refused == []


def test_the_api_and_worker_users_cannot_flush_or_reach_other_keys(server):
    for user in ("api", "worker"):
        client = server.client(user)
        for command in (("FLUSHALL",), ("GET", "other"), ("CONFIG", "GET", "*"),
                        ("ACL", "LIST"), ("SCRIPT", "FLUSH")):  # fmt: skip
            with pytest.raises(redis.exceptions.NoPermissionError):
                client.execute_command(*command)


def test_the_redis_exporter_scrapes_as_its_user_without_a_refusal(server, fleet):
    for context in (redis_role.conf_context, redis_role.exporter_context):  # put()'s own words
        assert not {"mode", "user", "group"} & set(context(fleet, fleet.host("h2")))
    env_text = render("pyinfra/templates/redis-exporter.default.j2",
                      **redis_role.exporter_context(fleet, fleet.host("h2")))  # fmt: skip
    env = dict(line.split("=", 1) for line in env_text.splitlines() if "=" in line
               and not line.startswith("#") and not line.startswith("ARGS"))  # fmt: skip
    port = free_port()
    proc = subprocess.Popen(
        ["prometheus-redis-exporter", "-redis.addr", f"redis://127.0.0.1:{server.port}",
         "-web.listen-address", f"127.0.0.1:{port}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        body = ""
        for _ in range(100):
            try:
                body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert "\nredis_up 1\n" in body, body[-2000:]
        assert "redis_connected_clients" in body
    finally:
        proc.terminate()
        proc.wait(10)
    assert server.refusals() == []
