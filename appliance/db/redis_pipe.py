"""One Redis connection that pipelines every concurrent command of an event loop.

The API's hot reads (a status read's version token: ``conversions.status_cache``) are one
short command each. Through ``redis.asyncio`` each costs some 60 us of Python (its pool,
retry and parser layers) against about 5 us here: commands issued in the same turn of the
event loop are written to the one connection together, and their replies, which Redis sends
in the order it got the commands, answer them in that order (hiredis parses them).

Failure is plain: when the oldest command has waited ``timeout`` seconds, or the connection
is lost, every command still waiting fails with a ``redis.RedisError`` (``TimeoutError`` or
``ConnectionError``, as callers expect from redis-py) and the connection is dropped; the
next command connects again. Callers fall back to the database on any ``RedisError``. One
timer per connection watches the oldest command, not one per command. A connect runs as a
task of its own; commands that come while it is under way, and for a while after it failed
(1 s, doubling to 10 s while failures go on), fail at once rather than wait for it. A
``rediss://`` URL is verified against the system's CAs (its query options are not read).

The interface is the part of redis-py's (``execute_command``, ``set``, ``aclose``) its
callers use, so a redis-py client may stand in for this one (tests do).
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from typing import Any, cast

import hiredis
import redis
from redis.connection import parse_url

CONNECT_SECONDS = 2.0
RECONNECT_SECONDS = 1.0  # after a failed connect, commands fail at once this long (doubling)
RECONNECT_MAX_SECONDS = 10.0


def pack(args: tuple[Any, ...]) -> bytes:
    """A command in RESP: an array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, str):
            arg = arg.encode()
        elif isinstance(arg, int):
            arg = b"%d" % arg
        out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(out)


class _Protocol(asyncio.Protocol):
    """The connection: commands go out in batches, replies answer them in order."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.reader = hiredis.Reader()
        self.waiting: collections.deque[tuple[asyncio.Future[Any], float]] = collections.deque()
        self.outgoing: list[bytes] = []
        self.transport: asyncio.Transport | None = None
        self.lost: Exception | None = None
        self.loop = asyncio.get_running_loop()
        self._watch: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike
        self.transport = cast(asyncio.Transport, transport)

    def send(self, command: bytes) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if self.lost is not None:
            future.set_exception(redis.ConnectionError(str(self.lost)))
            return future
        self.waiting.append((future, loop.time()))
        if not self.outgoing:  # the first of this turn's commands: send them all at its end
            loop.call_soon(self._flush)
        if self._watch is None:
            self._watch = loop.call_later(self.timeout, self._check)
        self.outgoing.append(command)
        return future

    def _flush(self) -> None:
        if self.transport is not None and self.outgoing and self.lost is None:
            self.transport.write(b"".join(self.outgoing))
        self.outgoing.clear()

    def _check(self) -> None:
        """Fail everything when the oldest command has waited too long; else look again
        when it will have."""
        self._watch = None
        if not self.waiting or self.lost is not None:
            return
        loop = asyncio.get_running_loop()
        due = self.waiting[0][1] + self.timeout
        if loop.time() >= due:
            self.close(redis.TimeoutError(f"no reply from Redis in {self.timeout:g} s"))
        else:
            self._watch = loop.call_at(due, self._check)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        try:
            while (reply := self.reader.gets()) is not False:
                if not self.waiting:  # a reply nothing asked for: the stream is out of step
                    raise redis.ConnectionError("Redis sent an unexpected reply")
                future, _ = self.waiting.popleft()
                if future.done():  # its caller was cancelled; the order still holds
                    continue
                if isinstance(reply, hiredis.ReplyError):
                    future.set_exception(redis.ResponseError(str(reply)))
                else:
                    future.set_result(reply)
        except (hiredis.ProtocolError, redis.ConnectionError) as exc:
            self.close(redis.ConnectionError(str(exc)))

    def connection_lost(self, exc: Exception | None) -> None:
        self.close(exc or redis.ConnectionError("Redis closed the connection"))

    def close(self, why: Exception) -> None:
        if self.lost is None:
            self.lost = why
        error = why if isinstance(why, redis.RedisError) else redis.ConnectionError(str(why))
        while self.waiting:
            future, _ = self.waiting.popleft()
            if not future.done():
                future.set_exception(error)
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        if self.transport is not None:
            self.transport.abort()  # not close(): that would wait for a dead peer to take the rest


class PipelinedRedis:
    """A client of one Redis URL (``redis://``, ``rediss://`` or ``unix://``) for use on one
    event loop at a time; it connects on first use and again after a failure. ``patient``:
    commands that come while a connect is under way wait for it (a writer's, which has no
    database to fall back on), instead of failing at once (a reader's)."""

    def __init__(self, url: str, timeout: float = 2.0, *, patient: bool = False) -> None:
        self.url = url
        self.timeout = timeout
        self.patient = patient
        self._options = parse_url(url)
        self._tls = url.startswith("rediss://")
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Task[_Protocol] | None = None
        self._down: tuple[float, str] | None = None  # (until, why): commands fail at once
        self._failures = 0  # connects failed in a row

    async def execute_command(self, *args: Any) -> Any:
        protocol = await self._connected()
        return await protocol.send(pack(args))

    async def set(
        self, name: str, value: bytes | str, *, nx: bool = False, get: bool = False,
        ex: int | None = None,
    ) -> Any:  # fmt: skip
        """redis-py's ``set`` for these options: with ``get``, the old value or None."""
        args: list[Any] = ["SET", name, value]
        if nx:
            args.append("NX")
        if get:
            args.append("GET")
        if ex is not None:
            args += ["EX", ex]
        reply = await self.execute_command(*args)
        return reply if get else reply == b"OK"

    async def aclose(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
        if self._protocol is not None:
            self._protocol.close(redis.ConnectionError("closed"))
            self._protocol = None

    async def _connected(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        protocol = self._protocol
        if protocol is not None and protocol.lost is None and protocol.loop is loop:
            return protocol
        connecting = self._connecting
        if connecting is not None and connecting.get_loop() is loop:
            if self.patient:
                return await asyncio.shield(connecting)
            raise redis.ConnectionError("connecting to Redis")  # the readers do not wait
        if self._down is not None and loop.time() < self._down[0]:
            raise redis.ConnectionError(self._down[1])  # nor while it is down
        task = self._connecting = loop.create_task(self._connect_once(loop))
        task.add_done_callback(_retrieved)
        return await asyncio.shield(task)  # a cancelled caller leaves the connect going

    async def _connect_once(self, loop: asyncio.AbstractEventLoop) -> _Protocol:
        try:
            protocol = await asyncio.wait_for(self._connect(loop), CONNECT_SECONDS)
        except Exception as exc:
            why = f"could not connect to Redis: {exc!r}"
            self._failures += 1
            pause = min(RECONNECT_MAX_SECONDS, RECONNECT_SECONDS * 2 ** (self._failures - 1))
            self._down = (loop.time() + pause, why)
            raise (
                exc if isinstance(exc, redis.RedisError) else redis.ConnectionError(why)
            ) from exc
        finally:
            if self._connecting is asyncio.current_task():
                self._connecting = None
        self._protocol, self._down, self._failures = protocol, None, 0
        return protocol

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _Protocol:
        opts = self._options

        def make() -> _Protocol:
            return _Protocol(self.timeout)

        if "path" in opts:
            _, protocol = await loop.create_unix_connection(make, opts["path"])
        else:
            context = ssl.create_default_context() if self._tls else None
            host, port = opts.get("host", "localhost"), opts.get("port", 6379)
            _, protocol = await loop.create_connection(make, host, port, ssl=context)
        hello = []
        if opts.get("password"):
            user = [opts["username"]] if opts.get("username") else []
            hello.append(protocol.send(pack(("AUTH", *user, opts["password"]))))
        if opts.get("db"):
            hello.append(protocol.send(pack(("SELECT", opts["db"]))))
        try:
            replies = await asyncio.gather(*hello, return_exceptions=True)
        except BaseException:  # out of time
            protocol.close(redis.ConnectionError("could not log in to Redis"))
            raise
        refused = [r for r in replies if isinstance(r, BaseException)]
        if refused:
            protocol.close(redis.ConnectionError("could not log in to Redis"))
            raise refused[0]
        return protocol


def _retrieved(task: asyncio.Task[Any]) -> None:
    """A connect's failure is its callers'; when every caller was cancelled, nobody's."""
    if not task.cancelled():
        task.exception()
