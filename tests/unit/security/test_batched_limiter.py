"""Batched counting: far from a limit a request costs no round trip; near it every event is
sent; concurrent requests of one process never send the same events twice."""

import asyncio

from appliance.security.limits import BatchedLimiter, Decision, Limiter, Rule


class Counting(Limiter):
    """A Limiter over an in-memory Redis stand-in that counts round trips (unit test only)."""

    def __init__(self) -> None:
        super().__init__(client=None)
        self.totals: dict[str, int] = {}
        self.trips = 0

    async def count_all(self, events):
        self.trips += 1
        await asyncio.sleep(0)  # let other requests run meanwhile, as a real round trip does
        out = []
        for rule, ident, n in events:
            key, reset = self.key(rule, ident, 0)
            self.totals[key] = self.totals.get(key, 0) + n
            out.append(Decision(rule, self.totals[key], reset))
        return out


async def _requests(limiter: BatchedLimiter, rule: Rule, n: int) -> list[bool]:
    decisions = await asyncio.gather(*(limiter.count_all([(rule, "a", 1)]) for _ in range(n)))
    return [d[0].allowed for d in decisions]


def test_far_from_the_limit_requests_are_batched_and_never_counted_twice():
    backend = Counting()
    limiter = BatchedLimiter(backend)
    rule = Rule("r", "ip", 10_000)
    allowed = asyncio.run(_requests(limiter, rule, 1000))
    assert all(allowed)
    assert backend.trips < 1000 / 50  # batches of up to 2% of the limit
    pending = sum(s.pending for s in limiter._local.values())
    assert sum(backend.totals.values()) + pending == 1000  # every event once


def test_near_the_limit_every_event_is_sent_and_the_limit_holds_exactly():
    backend = Counting()
    limiter = BatchedLimiter(backend)
    rule = Rule("r", "ip", 40)
    allowed = asyncio.run(_requests(limiter, rule, 60))
    assert allowed.count(True) == 40 and backend.trips == 60
