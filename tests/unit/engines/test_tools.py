"""A tool's failure is the input's fault; what the tool printed goes to the log, not to the
client (it may name paths and versions)."""

import logging

import pytest

from appliance.engines.tools import run_tool, scrub_paths
from appliance.errors import PermanentError


def test_a_failing_tool_tells_the_client_a_stable_message_and_the_log_its_words(caplog):
    caplog.set_level(logging.WARNING)
    with pytest.raises(PermanentError) as info:
        run_tool(
            ["sh", "-c", "echo 'open /job/secret/input.pdf: bad xref' >&2; exit 3"], what="qpdf"
        )
    assert info.value.code == "INVALID_INPUT_FILE"
    assert "/job/secret" not in info.value.message and "qpdf" in info.value.message
    assert "/job/secret/input.pdf: bad xref" in caplog.text


@pytest.mark.parametrize(
    "script",
    [
        # GHC's runtime (pandoc) past RLIMIT_DATA, then abort
        "echo 'pandoc: Unable to commit 1048576 bytes of memory' >&2; kill -ABRT $$",
        "echo 'No Memory' >&2; exit 1",  # rsvg-convert
        "echo 'terminate called after throwing std::bad_alloc' >&2; exit 134",
        "echo 'write error: No space left on device' >&2; exit 1",  # a full private tmpfs
        "kill -XCPU $$",  # the CPU-time limit
        "kill -XFSZ $$",  # the output size limit
    ],
)
def test_a_tool_out_of_memory_time_or_space_is_an_engine_limit(script):
    with pytest.raises(PermanentError) as info:
        run_tool(["sh", "-c", script], what="pandoc")
    assert info.value.code == "ENGINE_LIMIT"
    assert "more memory, time or output space" in info.value.message


def test_a_crash_without_a_word_on_memory_is_still_the_inputs_fault():
    with pytest.raises(PermanentError) as info:
        run_tool(["sh", "-c", "echo 'parse error at line 3' >&2; kill -SEGV $$"], what="pandoc")
    assert info.value.code == "INVALID_INPUT_FILE"


@pytest.mark.parametrize(
    ("message", "shown"),
    [
        (
            'VipsForeignLoad: "/job/4f2a/input.png" is not a known file format',
            'VipsForeignLoad: "input.png" is not a known file format',
        ),
        (
            "unable to load from file b'/job/4f2a/input.svg'",
            "unable to load from file b'input.svg'",
        ),
        ("cannot open /var/lib/appliance/work/t1/hop0-0.pdf: bad", "cannot open hop0-0.pdf: bad"),
        ("see https://example.com/a/b.html", "see https://example.com/a/b.html"),
        ("pages 1-3 of 5/6", "pages 1-3 of 5/6"),
    ],
)
def test_messages_name_files_without_their_paths(message, shown):
    assert scrub_paths(message) == shown
