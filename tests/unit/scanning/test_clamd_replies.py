import pytest

from appliance.scanning.clamd import Unavailable, Verdict, parse_scan_reply


def test_ok_is_clean():
    assert parse_scan_reply("stream: OK") == Verdict(clean=True)


def test_found_names_the_signature():
    found = parse_scan_reply("stream: Win.Test.EICAR_HDB-1 FOUND")
    assert found == Verdict(clean=False, signature="Win.Test.EICAR_HDB-1")


@pytest.mark.parametrize(
    "reply", ["INSTREAM size limit exceeded. ERROR", "stream: Can't allocate memory ERROR", ""]
)
def test_an_error_answer_is_no_verdict(reply):
    with pytest.raises(Unavailable):
        parse_scan_reply(reply)
