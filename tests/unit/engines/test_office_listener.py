"""The warm LibreOffice's restarts, with stand-in instances (no LibreOffice): a replacement
starts in the background and takes over after exactly N conversions, without a wait."""

from __future__ import annotations

import time

import pytest

from appliance.engines import office

START_SECONDS = 0.3  # a stand-in's start
CALL_SECONDS = 0.1  # a stand-in's conversion


class FakeInstance:
    made: list[FakeInstance] = []  # every one, in order

    def __init__(self, slot: int) -> None:
        self.slot, self.n, self.running, self.calls = slot, len(self.made), False, 0
        self.made.append(self)

    def start(self) -> None:
        time.sleep(START_SECONDS)
        self.running = True

    def alive(self) -> bool:
        return self.running

    def stop(self) -> None:
        self.running = False

    def call(self, request: dict) -> dict:
        assert self.running
        time.sleep(CALL_SECONDS)
        self.calls += 1
        return {"ok": True, "by": self.n}


@pytest.fixture
def listener(monkeypatch):
    monkeypatch.setattr(office, "_Instance", FakeInstance)
    FakeInstance.made.clear()
    lst = office._Listener(restart_after=10)
    yield lst
    lst.stop()


def _convert(listener, times: int) -> tuple[list[int], list[float]]:
    """Which instance served each conversion, and how long each waited beyond its own run."""
    served_by, waits = [], []
    for _ in range(times):
        start = time.perf_counter()
        listener.convert({})
        waits.append(time.perf_counter() - start - CALL_SECONDS)
        served_by.append(listener.current.n)
    return served_by, waits


def test_a_restart_is_exactly_after_n_conversions_and_costs_them_no_wait(listener):
    served_by, waits = _convert(listener, 25)
    first, second, third = FakeInstance.made[:3]
    assert served_by == [first.n] * 10 + [second.n] * 10 + [third.n] * 5
    assert waits[0] >= START_SECONDS  # the very first start is waited for
    assert max(waits[1:]) < START_SECONDS / 2  # replacements were ready when due
    assert not first.alive() and not second.alive() and third.alive()
    assert first.slot != second.slot and second.slot != third.slot  # never the same profile


def test_a_dead_instance_is_replaced_before_the_next_conversion(listener):
    listener.convert({})
    dead = listener.current
    dead.stop()  # soffice killed between two conversions
    listener.convert({})
    assert listener.current is not dead and listener.current.alive()
    assert listener.served == 1


def test_stop_ends_the_running_instance_and_a_replacement_being_started(listener):
    for _ in range(6):  # the replacement starts at the 6th of 10
        listener.convert({})
    running, starting = FakeInstance.made
    listener.stop()
    assert not running.alive() and not starting.alive()


def test_a_replacement_still_starting_when_due_lets_the_old_instance_go_on(monkeypatch):
    """Restart due after 4, replacement started 2 before (0.2 s of conversions, less than
    its 0.3 s start): the old instance serves on until the replacement is up."""
    monkeypatch.setattr(office, "_Instance", FakeInstance)
    FakeInstance.made.clear()
    listener = office._Listener(restart_after=4)
    try:
        served_by, waits = _convert(listener, 10)
    finally:
        listener.stop()
    assert max(waits[1:]) < START_SECONDS / 2  # nobody waited for the slow start
    first = served_by.count(served_by[0])
    assert first > 4 and served_by[first] != served_by[0]  # went on, then switched


class FailingInstance(FakeInstance):
    """Answers with ``reply`` (None: the bridge was lost), dying first if ``dies``; its log
    names a memory limit if ``oom``."""

    reply: dict | None = None
    dies = False
    oom = False

    def call(self, request: dict) -> dict | None:
        if self.dies:
            self.running = False
        return self.reply

    def out_of_memory(self) -> bool:
        return self.oom


@pytest.mark.parametrize(
    ("reply", "dies", "oom", "code"),
    [
        # a PDF export that ran out of memory, as LibreOffice 7.4 reported it (measured)
        (
            {
                "error": "IOException: SfxBaseModel::impl_store <file:///job/x/output.pdf> "
                "failed: 0xc10(Error Area:Io Class:Write Code:16)"
            },
            False,
            False,
            "ENGINE_LIMIT",
        ),
        (
            {"error": "IOException: failed: 0x...(Error Area:Io Class:Space Code:17)"},
            0,
            0,
            "ENGINE_LIMIT",
        ),
        (
            {"error": "IllegalArgumentException: Unsupported URL"},
            False,
            False,
            "INVALID_INPUT_FILE",
        ),
        (None, True, True, "ENGINE_LIMIT"),  # soffice died of std::bad_alloc
        (None, True, False, "ENGINE_CRASHED"),
    ],
)
def test_libreoffice_out_of_memory_is_an_engine_limit_not_the_documents_fault(
    monkeypatch, reply, dies, oom, code
):
    monkeypatch.setattr(FailingInstance, "reply", reply)
    monkeypatch.setattr(FailingInstance, "dies", dies)
    monkeypatch.setattr(FailingInstance, "oom", oom)
    monkeypatch.setattr(office, "_Instance", FailingInstance)
    listener = office._Listener(restart_after=10)
    try:
        with pytest.raises(office.PermanentError) as info:
            listener.convert({})
    finally:
        listener.stop()
    assert info.value.code == code
