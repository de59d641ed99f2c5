"""HelperPool lends helpers to one conversion at a time (no helper process is started here:
a helper starts on its first job directory)."""

from __future__ import annotations

import threading
import time

from appliance.engines.sandbox import HelperPool, Limits


def _hold_at_once(pool: HelperPool, threads: int, hold: float) -> tuple[list[object], int]:
    """Each thread leases a helper and holds it ``hold`` s; the helpers they got, and the
    most held at one moment."""
    got: list[object] = []
    held, most = 0, 0
    lock = threading.Lock()

    def run() -> None:
        nonlocal held, most
        with pool.lease() as helper:
            with lock:
                got.append(helper)
                held += 1
                most = max(most, held)
            time.sleep(hold)
            with lock:
                held -= 1

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(10)
    assert not any(w.is_alive() for w in workers)
    return got, most


def test_an_unbounded_pool_gives_each_concurrent_conversion_its_own_helper(tmp_path):
    got, most = _hold_at_once(HelperPool(tmp_path, Limits()), threads=3, hold=0.3)
    assert most == 3 and len(set(map(id, got))) == 3


def test_a_bounded_pool_never_runs_more_helpers_than_its_size(tmp_path):
    pool = HelperPool(tmp_path, Limits(), size=2)
    got, most = _hold_at_once(pool, threads=5, hold=0.1)
    assert len(got) == 5  # every conversion got a helper, waiting for a free one
    assert most == 2 and len(set(map(id, got))) == 2


def test_the_most_recently_used_helper_goes_first(tmp_path):
    pool = HelperPool(tmp_path, Limits(), size=3)
    with pool.lease() as first, pool.lease() as second:
        assert first is not second
    with pool.lease() as again:
        assert again is first  # returned last, so warmest
    assert pool.helper() is first
