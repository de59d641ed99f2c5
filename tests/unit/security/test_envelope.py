"""Master keys and the wrapping of data keys, without a database."""

import base64
import os
import uuid

import pytest

from appliance.security import envelope
from appliance.security.envelope import DataKey, MasterKeyError, MasterKeys


def master(ident: str) -> tuple[str, bytes]:
    return ident, os.urandom(32)


def test_the_last_master_key_is_current_and_the_others_still_unwrap():
    old, new = master("old"), master("new")
    key = DataKey(uuid.uuid4(), os.urandom(32))
    wrapped_by_old = MasterKeys([old]).wrap(key)
    both = MasterKeys([old, new])
    assert both.current == "new"
    assert both.unwrap(key.id, *wrapped_by_old) == key
    assert both.wrap(key)[0] == "new"


def test_a_wrapped_key_opens_only_for_its_own_row():
    keys = MasterKeys([master("m")])
    key = DataKey(uuid.uuid4(), os.urandom(32))
    master_id, wrapped = keys.wrap(key)
    with pytest.raises(MasterKeyError, match="does not open"):
        keys.unwrap(uuid.uuid4(), master_id, wrapped)


def test_a_data_key_under_a_master_key_not_configured_names_it():
    key = DataKey(uuid.uuid4(), os.urandom(32))
    master_id, wrapped = MasterKeys([master("gone")]).wrap(key)
    with pytest.raises(MasterKeyError, match=r"'gone'.*not configured"):
        MasterKeys([master("other")]).unwrap(key.id, master_id, wrapped)


def test_key_file_lines_and_setting_entries_parse_alike():
    line = envelope.new_master_line()
    ident, encoded = line.split(" ")
    from_file = MasterKeys.parse(line + "\n", " ")
    from_setting = MasterKeys.parse(f"{ident}:{encoded}", ":")
    assert from_file.keys == from_setting.keys and from_file.current == ident
    assert len(base64.urlsafe_b64decode(encoded + "==")) == 32


@pytest.mark.parametrize("text", ["", "k1:c2hvcnQ", "k1:" + "A" * 43 + ",k1 x:" + "A" * 43])
def test_malformed_master_keys_are_refused(text):
    with pytest.raises(MasterKeyError):
        MasterKeys.parse(text, ":")


def test_a_new_key_file_is_private_and_a_second_creation_keeps_the_first(tmp_path):
    path = tmp_path / "master_keys"
    envelope.create_key_file(path)
    first = path.read_text()
    envelope.create_key_file(path)
    assert path.read_text() == first and path.stat().st_mode & 0o777 == 0o600
    added = envelope.add_to_key_file(path)
    assert MasterKeys.parse(path.read_text(), " ").current == added
