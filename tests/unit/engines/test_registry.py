from dataclasses import dataclass

import msgspec
import pytest

from appliance.engines import Descriptor
from appliance.engines.registry import Registry
from appliance.errors import InvalidData, PermanentError


class NoOptions(msgspec.Struct, forbid_unknown_fields=True):
    pass


@dataclass
class FakeEngine:
    descriptor: Descriptor

    def convert(self, *args):  # never run in these tests
        raise AssertionError


def engine(id, pairs, queue="light"):
    return FakeEngine(
        Descriptor(id, frozenset(pairs), NoOptions, queue, lambda: "1", family="test")
    )


REGISTRY = Registry(
    [
        engine("office", [("pages", "docx"), ("docx", "pdf")], queue="office"),
        engine("pdf", [("pdf", "png")]),
        engine("img", [("png", "jpg"), ("jpg", "png")]),
    ]
)


def test_direct_route_is_one_hop():
    hops = REGISTRY.route("pdf", "png")
    assert [(h.src, h.dst) for h in hops] == [("pdf", "png")]


def test_multi_hop_route_takes_the_fewest_hops():
    hops = REGISTRY.route("pages", "jpg")
    assert [(h.src, h.dst) for h in hops] == [
        ("pages", "docx"),
        ("docx", "pdf"),
        ("pdf", "png"),
        ("png", "jpg"),
    ]


def test_heaviest_queue_runs_the_route():
    assert REGISTRY.queue_for(REGISTRY.route("pages", "png")) == "office"
    assert REGISTRY.queue_for(REGISTRY.route("pdf", "jpg")) == "light"


def test_no_route_gives_422():
    assert REGISTRY.route("png", "pdf") is None
    with pytest.raises(InvalidData) as info:
        REGISTRY.plan("png", "pdf", {})
    assert "output_format" in info.value.errors


def test_duplicate_engine_ids_are_refused_at_start():
    with pytest.raises(RuntimeError, match="twice"):
        Registry([engine("a", []), engine("a", [])])


def test_unknown_queue_class_is_refused_at_start():
    with pytest.raises(RuntimeError, match="queue class"):
        Registry([engine("a", [], queue="gpu")])


def test_formats_lists_every_reachable_pair_with_its_route():
    rows = REGISTRY.formats(input_format="docx")
    assert [(r["input_format"], r["output_format"], r["engine"]) for r in rows] == [
        ("docx", "jpg", "office+pdf+img"),
        ("docx", "pdf", "office"),
        ("docx", "png", "office+pdf"),
    ]
    assert rows[0]["route"] == [
        {"from": "docx", "to": "pdf", "engine": "office"},
        {"from": "pdf", "to": "png", "engine": "pdf"},
        {"from": "png", "to": "jpg", "engine": "img"},
    ]
    assert rows[0]["queue"] == "office"
    assert [r["input_format"] for r in REGISTRY.formats(output_format="docx")] == ["pages"]


def test_route_prefers_the_cheaper_engines_over_fewer_hops():
    slow = FakeEngine(
        Descriptor(
            "slow",
            frozenset({("a", "c")}),
            NoOptions,
            "light",
            lambda: "1",
            family="test",
            cost=5.0,
        )
    )
    registry = Registry([slow, engine("ab", [("a", "b")]), engine("bc", [("b", "c")])])
    assert [h.engine.descriptor.id for h in registry.route("a", "c")] == ["ab", "bc"]
    cheap = FakeEngine(
        Descriptor(
            "cheap",
            frozenset({("a", "c")}),
            NoOptions,
            "light",
            lambda: "1",
            family="test",
            cost=1.5,
        )
    )
    registry = Registry([cheap, engine("ab", [("a", "b")]), engine("bc", [("b", "c")])])
    assert [h.engine.descriptor.id for h in registry.route("a", "c")] == ["cheap"]


def test_a_format_into_itself_needs_an_engine_that_declares_it():
    registry = Registry([engine("pdfpdf", [("pdf", "pdf")]), engine("pdf", [("pdf", "png")])])
    assert [(h.src, h.dst, h.engine.descriptor.id) for h in registry.route("pdf", "pdf")] == [
        ("pdf", "pdf", "pdfpdf")
    ]
    assert registry.route("png", "png") is None
    assert "pdf" in registry.targets
    rows = registry.formats(input_format="pdf")
    assert [(r["output_format"], r["engine"]) for r in rows] == [("pdf", "pdfpdf"), ("png", "pdf")]
    # a loop never lengthens another route
    assert [h.engine.descriptor.id for h in registry.route("pdf", "png")] == ["pdf"]


def test_engines_are_found_by_id_and_a_missing_one_is_a_clear_error():
    assert REGISTRY.engine("office").descriptor.id == "office"
    with pytest.raises(PermanentError) as info:
        REGISTRY.engine("nope")
    assert info.value.code == "ENGINE_UNAVAILABLE"


def test_a_last_only_pair_ends_a_route_and_is_never_a_step_in_one():
    media = FakeEngine(
        Descriptor(
            "media",
            frozenset({("mp4", "gif"), ("mp4", "webm")}),
            NoOptions,
            "media",
            lambda: "1",
            family="test",
            last_only=frozenset({("mp4", "gif")}),
        )
    )
    images = engine("img", [("gif", "png"), ("png", "pdf")])
    registry = Registry([media, images])
    assert [(h.src, h.dst) for h in registry.route("mp4", "gif")] == [("mp4", "gif")]
    # gif -> png would make mp4 -> png reachable through the last-only hop: it is not
    assert registry.route("mp4", "png") is None
    assert registry.route("mp4", "pdf") is None
    assert {r["output_format"] for r in registry.formats("mp4")} == {"gif", "webm"}
    assert "mp4" in registry.sources and "gif" in registry.targets
    # an ordinary hop into gif still leads on
    registry = Registry([media, images, engine("vid", [("webm", "gif")])])
    assert [(h.src, h.dst) for h in registry.route("mp4", "png")] == [
        ("mp4", "webm"),
        ("webm", "gif"),
        ("gif", "png"),
    ]
