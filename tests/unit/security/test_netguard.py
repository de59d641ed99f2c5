import pytest

from appliance.errors import InvalidData
from appliance.security.netguard import resolve


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "::1",
        "fe80::1",
        "fd00:ec2::254",
        "100.100.100.200",
        "0.0.0.0",
        "::ffff:127.0.0.1",
        "100.64.0.1",
        "localhost",
    ],
)
def test_private_loopback_link_local_and_metadata_addresses_are_refused(host):
    with pytest.raises(InvalidData) as info:
        resolve(host, 80, allow_private=False)
    assert info.value.code == "URL_NOT_ALLOWED"


def test_public_address_is_allowed():
    assert resolve("93.184.215.14", 443, allow_private=False) == "93.184.215.14"


def test_operator_may_allow_private_addresses():
    assert resolve("127.0.0.1", 80, allow_private=True) == "127.0.0.1"


def test_unresolvable_host_is_a_clear_error():
    with pytest.raises(InvalidData, match="resolve"):
        resolve("no-such-host.invalid", 80, allow_private=False)
