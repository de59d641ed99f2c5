"""Rate limits shared by every API process and host: fixed windows counted in Redis.

A rule allows ``limit`` events per ``window`` seconds per identity (a client address, a key).
Each event is one atomic INCR of the window's counter (with its expiry set in the same
transaction), so two processes counting at once never both take the last slot. Refusals carry
``Retry-After`` and the IETF ``RateLimit`` / ``RateLimit-Policy`` fields
(draft-ietf-httpapi-ratelimit-headers) and are counted in
``appliance_ratelimit_rejections_total`` by scope.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from appliance.errors import TooManyRequests
from appliance.metrics import RATELIMIT_REJECTIONS
from appliance.settings import Settings

log = logging.getLogger(__name__)
PREFIX = "appliance:ratelimit"
SLOT_RETRY_AFTER = 5  # seconds: a client refused a slot looks again


OnRefused = Callable[["Rule", str], Awaitable[None]]  # (rule, identity) of a refusal


@dataclass(frozen=True)
class Rule:
    name: str  # the policy's name in the headers and the Redis key
    scope: str  # the metric's label: what it is counted per (ip, key)
    limit: int  # events per window; 0: no limit
    window: int = 60  # seconds


@dataclass(frozen=True)
class Decision:
    rule: Rule
    used: int  # events counted in this window, this one included
    reset: int  # seconds until the window ends

    @property
    def allowed(self) -> bool:
        return self.used <= self.rule.limit

    def headers(self) -> dict[str, str]:
        remaining = max(0, self.rule.limit - self.used)
        return {
            "RateLimit-Policy": f'"{self.rule.name}";q={self.rule.limit};w={self.rule.window}',
            "RateLimit": f'"{self.rule.name}";r={remaining};t={self.reset}',
            **({} if self.allowed else {"Retry-After": str(self.reset)}),
        }

    def refuse(self) -> TooManyRequests:
        RATELIMIT_REJECTIONS.labels(self.rule.scope).inc()
        return TooManyRequests(
            f"Too many requests: at most {self.rule.limit} per {self.rule.window} s",
            limit_headers={**self.headers(), "Retry-After": str(self.reset)},
        )


class Limiter:
    """Counts events of rules in Redis (``redis.asyncio`` client)."""

    def __init__(self, client: Any) -> None:
        self.redis = client

    def key(self, rule: Rule, ident: str, now: float) -> tuple[str, int]:
        """The window's Redis key and the seconds until it ends."""
        index = int(now // rule.window)
        reset = max(1, int((index + 1) * rule.window - now))
        return f"{PREFIX}:{rule.name}:{ident}:{index}", reset

    async def count(self, rule: Rule, ident: str, n: int = 1) -> Decision:
        """``n`` more events of ``ident`` under ``rule``."""
        return (await self.count_all([(rule, ident, n)]))[0]

    async def count_all(self, events: list[tuple[Rule, str, int]]) -> list[Decision]:
        """Several counts in one round trip (and one transaction)."""
        now = time.time()
        keys = [self.key(rule, ident, now) for rule, ident, _ in events]
        pipe = self.redis.pipeline(transaction=True)
        for (rule, _, n), (key, _) in zip(events, keys, strict=True):
            pipe.incrby(key, n)
            pipe.expire(key, rule.window + 1, nx=True)
        replies = await pipe.execute()
        return [
            Decision(rule, int(used), reset)
            for (rule, _, _), (_, reset), used in zip(events, keys, replies[::2], strict=True)
        ]

    async def peek(self, rule: Rule, ident: str) -> Decision:
        """The events of ``ident`` in this window so far, counting none."""
        key, reset = self.key(rule, ident, time.time())
        return Decision(rule, int(await self.redis.get(key) or 0), reset)


@dataclass
class _Local:
    """One process's view of one window: the count Redis gave at the last flush, and what
    this process counted since."""

    known: int = 0
    pending: int = 0
    flushed_at: float = 0.0


class BatchedLimiter:
    """Counts like ``Limiter``, but a process sends its counts to Redis in batches while the
    window is far from its limit: a request then costs no round trip. Near the limit (within
    two batches) every event is sent at once, and a batch is at most 2% of the limit and a
    second old, so processes together pass a limit by at most 2% each beyond the first. A
    window's refusals are exact where it matters: from the limit on, every event goes to
    Redis."""

    MAX_WINDOWS = 100_000  # distinct (rule, identity) windows a process remembers

    def __init__(self, limiter: Limiter) -> None:
        self.limiter = limiter
        self._local: dict[tuple[str, str, int], _Local] = {}

    async def count_all(self, events: list[tuple[Rule, str, int]]) -> list[Decision]:
        now = time.time()
        decisions: list[Decision | None] = []
        flush: list[tuple[int, Rule, str, int]] = []
        for i, (rule, ident, n) in enumerate(events):
            _key, reset = self.limiter.key(rule, ident, now)
            state = self._window(rule, ident, now)
            state.pending += n
            batch = max(1, rule.limit // 50)
            headroom = rule.limit - state.known - state.pending
            if state.pending < batch and headroom > 2 * batch and now - state.flushed_at < 1.0:
                decisions.append(Decision(rule, state.known + state.pending, reset))
                continue
            # this request sends what is pending; others meanwhile count from zero again
            decisions.append(None)
            flush.append((i, rule, ident, state.pending))
            state.pending, state.flushed_at = 0, now
        if flush:
            try:
                sent = await self.limiter.count_all([(r, ident, n) for _, r, ident, n in flush])
            except BaseException:  # not sent: it is pending again
                for _, rule, ident, n in flush:
                    self._window(rule, ident, now).pending += n
                raise
            for (i, rule, ident, _), decision in zip(flush, sent, strict=True):
                state = self._window(rule, ident, now)
                state.known = max(state.known, decision.used)
                decisions[i] = decision
        return [d for d in decisions if d is not None]

    def _window(self, rule: Rule, ident: str, now: float) -> _Local:
        index = int(now // rule.window)
        key = (rule.name, ident, index)
        state = self._local.get(key)
        if state is None:
            if len(self._local) >= self.MAX_WINDOWS:
                self._local = {k: v for k, v in self._local.items() if k[2] >= index}
                if len(self._local) >= self.MAX_WINDOWS:
                    self._local.clear()
            state = self._local[key] = _Local(flushed_at=now)
        return state


class RequestLimits:
    """The API's limits on requests per client address and per key, and on conversions per
    client address. Redis unreachable: the limits fail open (logged), the API keeps working."""

    def __init__(
        self, limiter: Limiter, settings: Settings, on_refused: OnRefused | None = None
    ) -> None:
        self.limiter = BatchedLimiter(limiter)
        self.on_refused = on_refused  # told of each refusal (the audit log samples them)
        self.per_address = Rule(
            "requests-per-address", "ip", settings.requests_per_minute_per_address
        )
        self.per_key = Rule("requests-per-key", "key", settings.requests_per_minute_per_key)
        self.conversion = Rule(
            "conversions-per-address", "ip", settings.conversions_per_minute_per_address
        )

    async def request(self, address: str, key: str) -> None:
        """Count one request of ``address`` with ``key`` (an identifier of the key, never the
        key); TooManyRequests past either limit."""
        events = [(r, i, 1) for r, i in ((self.per_address, address), (self.per_key, key))]
        await self._count([e for e in events if e[0].limit])

    async def conversions(self, address: str, n: int) -> None:
        """Count ``n`` conversions asked for by ``address``."""
        if n and self.conversion.limit:
            await self._count([(self.conversion, address, n)])

    async def _count(self, events: list[tuple[Rule, str, int]]) -> None:
        if not events:
            return
        try:
            decisions = await self.limiter.count_all(events)
        except RedisError:
            log.warning("rate limits unavailable (Redis); letting requests through", exc_info=True)
            return
        for (_, ident, _), decision in zip(events, decisions, strict=True):
            if not decision.allowed:
                if self.on_refused is not None:
                    await self.on_refused(decision.rule, ident)
                raise decision.refuse()


# Takes a slot unless ``ARGV[1]`` are taken; the count lives ``ARGV[2]`` s past the last take,
# so slots of a process that died without giving them back free themselves. A count below
# zero (slots given back after the count was lost or expired: Redis restarted, a wait longer
# than the count lived) is taken as zero: it refused every wait of the user (429) in the lab's
# Redis drill, and never expired.
_TAKE_SLOT = """
local n = redis.call('INCR', KEYS[1])
if n < 1 then
    redis.call('INCRBY', KEYS[1], 1 - n)
    n = 1
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
if n > tonumber(ARGV[1]) then
    redis.call('DECR', KEYS[1])
    return -n + 1
end
return n
"""

# Gives a slot back unless none is counted (the count lost or expired meanwhile).
_GIVE_SLOT = """
if tonumber(redis.call('GET', KEYS[1]) or '0') > 0 then
    return redis.call('DECR', KEYS[1])
end
return 0
"""


class Slots:
    """At most ``limit`` things at once per identity (a user's open sync waits), counted in
    Redis by every API process and host. ``hold`` seconds bound how long one may last: the
    count expires that long after the last take, so a crashed process leaks nothing for long.
    Redis unreachable: open (logged), as the rate limits."""

    def __init__(self, client: Any, rule: Rule, hold: float, what: str) -> None:
        self.redis = client
        self.rule = rule  # its window is unused: slots are held, not counted per minute
        self.what = what
        self.ttl = int(hold) + 30
        self._take = client.register_script(_TAKE_SLOT)
        self._give = client.register_script(_GIVE_SLOT)

    @contextlib.asynccontextmanager
    async def slot(self, ident: str) -> AsyncIterator[None]:
        """Hold one slot of ``ident`` for the block; TooManyRequests when none is free."""
        limit = self.rule.limit
        if not limit:
            yield
            return
        key = f"{PREFIX}:{self.rule.name}:{ident}"
        try:
            taken = int(await self._take(keys=[key], args=[limit, self.ttl]))
        except RedisError:
            log.warning("%s unavailable (Redis); letting it through", self.what, exc_info=True)
            yield
            return
        if taken <= 0:
            RATELIMIT_REJECTIONS.labels(self.rule.scope).inc()
            raise TooManyRequests(
                f"Too many {self.what}: at most {limit} at once",
                code="TOO_MANY_AT_ONCE",
                limit_headers={"Retry-After": str(SLOT_RETRY_AFTER)},
            )
        try:
            yield
        finally:
            with contextlib.suppress(RedisError):
                await self._give(keys=[key])


def networks(spec: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(part.strip()) for part in spec.split(",") if part.strip()]


def client_address(
    peer: str | None,
    forwarded_for: str | None,
    trusted: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network],
) -> str:
    """The address a request came from: the peer, unless the peer is a trusted proxy; then
    the right-most address of X-Forwarded-For that is not one (proxies append the address
    they got the request from, so what stands left of an untrusted hop may be forged). A hop
    that is no address makes the peer the answer."""
    trusted = list(trusted)
    if not peer or not _among(_ip(peer), trusted) or not forwarded_for:
        return peer or "unknown"
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        ip = _ip(hop)
        if ip is None:
            return peer
        if not _among(ip, trusted):
            return hop
    return hops[0] if hops else peer


class ClientAddresses:
    """``client_address`` for one set of trusted proxies, with what it parses remembered: a
    client's requests come through the same proxy with the same header, and parsing them
    again was a tenth of a cached status read's time. Only what a trusted proxy forwarded,
    and no more than ``FORWARDED_CACHED`` characters of it, is remembered (a client talking
    to the API directly chooses its header and would fill the memory with it)."""

    FORWARDED_CACHED = 256

    def __init__(self, trusted: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> None:
        self.trusted = tuple(trusted)
        self._proxy = functools.lru_cache(maxsize=4096)(self._is_proxy)
        self._forwarded = functools.lru_cache(maxsize=4096)(self._resolve)

    def of(self, peer: str | None, forwarded_for: str | None) -> str:
        if not peer or not forwarded_for or not self._proxy(peer):
            return peer or "unknown"
        if len(forwarded_for) > self.FORWARDED_CACHED:
            return client_address(peer, forwarded_for, self.trusted)
        return self._forwarded(peer, forwarded_for)

    def _is_proxy(self, peer: str) -> bool:
        return _among(_ip(peer), self.trusted)

    def _resolve(self, peer: str, forwarded_for: str) -> str:
        return client_address(peer, forwarded_for, self.trusted)


def _among(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None,
    networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network],
) -> bool:
    return ip is not None and any(ip in net for net in networks)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None
