from dataclasses import dataclass

import msgspec

from appliance.engines import Descriptor
from appliance.engines.doctor import check_engine


class NoOptions(msgspec.Struct):
    pass


@dataclass
class Fake:
    descriptor: Descriptor


def test_engine_with_a_missing_program_is_reported_with_the_fix():
    fake = Fake(
        Descriptor(
            "x",
            frozenset({("a", "b")}),
            NoOptions,
            "light",
            lambda: "1",
            family="test",
            requires=("definitely-not-installed-tool",),
        )
    )
    check = check_engine(fake)
    assert not check.ok and "definitely-not-installed-tool" in check.detail
    assert "install.sh" in check.detail


def test_engine_whose_library_fails_to_load_is_reported():
    def broken():
        raise OSError("libfoo.so: cannot open shared object file")

    check = check_engine(
        Fake(Descriptor("y", frozenset(), NoOptions, "light", broken, family="test"))
    )
    assert not check.ok and "libfoo" in check.detail


def test_usable_engine_shows_version_and_queue():
    check = check_engine(
        Fake(
            Descriptor(
                "z", frozenset({("a", "b")}), NoOptions, "media", lambda: "z 1.0", family="test"
            )
        )
    )
    assert check.ok and "z 1.0" in check.detail and "media" in check.detail


def test_engine_without_format_pairs_is_shown_as_serving_task_operations():
    check = check_engine(
        Fake(Descriptor("merge", frozenset(), NoOptions, "light", lambda: "2", family="test"))
    )
    assert check.ok and "task operations" in check.detail and "0 conversions" not in check.detail
