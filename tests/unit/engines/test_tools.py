"""A tool's failure is the input's fault; what the tool printed goes to the log, not to the
client (it may name paths and versions)."""

import logging

import pytest

from appliance.engines.tools import run_tool
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
