import pytest

from appliance.errors import InvalidData
from appliance.security.netguard import GuardedPoolManager, resolve


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


def test_unresolvable_host_is_a_clear_error_naming_the_url_field():
    with pytest.raises(InvalidData, match="resolve") as info:
        resolve("no-such-host.invalid", 80, allow_private=False)
    assert info.value.code == "INVALID_URL"
    assert info.value.errors == {"url": ["cannot resolve 'no-such-host.invalid'"]}


def test_a_refusal_names_the_url_field_and_what_is_not_allowed():
    with pytest.raises(InvalidData) as info:
        resolve("10.0.0.1", 80, allow_private=False)
    assert info.value.errors == {
        "url": ["private, loopback, link-local and metadata addresses are not allowed"]
    }


def test_a_link_local_address_with_a_zone_is_refused():
    with pytest.raises(InvalidData) as info:
        resolve("fe80::1%lo", 80, allow_private=False)
    assert info.value.code == "URL_NOT_ALLOWED"
    assert resolve("fe80::1%lo", 80, allow_private=True) == "fe80::1"


@pytest.mark.parametrize(
    "address",
    [
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
        "2002:a00:1::1",  # 6to4 of 10.0.0.1
        "::7f00:1",  # IPv4-compatible 127.0.0.1
    ],
)
def test_ipv6_forms_carrying_a_private_ipv4_are_refused(address):
    with pytest.raises(InvalidData):
        resolve(address, 80, allow_private=False)


def test_nat64_of_a_public_address_is_allowed():
    assert resolve("64:ff9b::5db8:d70e", 80, allow_private=False) == "64:ff9b::5db8:d70e"


def test_a_refusal_does_not_tell_the_client_what_the_host_resolved_to():
    with pytest.raises(InvalidData) as info:
        resolve("localhost", 80, allow_private=False)
    said = info.value.message + str(info.value.errors)
    assert "127.0.0.1" not in said and "::1" not in said


def test_guarded_pools_connect_to_the_checked_address_and_tls_checks_the_name():
    manager = GuardedPoolManager(allow_private=True)
    pool = manager.connection_from_host("localhost", 8443, "https")
    assert pool.host in ("127.0.0.1", "::1")
    assert (pool.conn_kw["server_hostname"], pool.assert_hostname) == ("localhost", "localhost")
    assert manager.connection_from_host("localhost", 80, "http").host in ("127.0.0.1", "::1")


@pytest.mark.parametrize(
    ("url", "host", "port"),
    [
        ("https://localhost/", "127.0.0.1", 443),
        ("http://localhost/", "127.0.0.1", 80),
        ("HTTP://localhost:8080/", "127.0.0.1", 8080),
        ("http://[::1]:8081/", "::1", 8081),
    ],
)
def test_guarded_pools_keep_the_port_and_its_default_per_scheme(url, host, port):
    pool = GuardedPoolManager(allow_private=True).connection_from_url(url)
    assert (pool.host.strip("[]"), pool.port) == (host, port)


def test_a_guarded_pool_without_a_scheme_is_http():
    pool = GuardedPoolManager(allow_private=True).connection_from_host("localhost", None, None)
    assert (pool.scheme, pool.port) == ("http", 80)


def test_tls_pools_keep_the_callers_other_settings():
    manager = GuardedPoolManager(allow_private=True)
    pool = manager.connection_from_host("localhost", 8443, "https", {"maxsize": 3})
    assert pool.pool.maxsize == 3 and pool.assert_hostname == "localhost"


def test_guarded_pools_refuse_private_addresses_before_connecting():
    manager = GuardedPoolManager(allow_private=False)
    with pytest.raises(InvalidData) as info:
        manager.urlopen("GET", "http://127.0.0.1:9/")
    assert info.value.code == "URL_NOT_ALLOWED"


def test_a_refusal_names_the_host_and_the_address_in_the_log_only(caplog):
    import logging

    with (
        caplog.at_level(logging.WARNING, logger="appliance.security.netguard"),
        pytest.raises(InvalidData),
    ):
        resolve("10.1.2.3", 80, allow_private=False)
    assert [r.getMessage() for r in caplog.records] == ["refused 10.1.2.3: it resolves to 10.1.2.3"]
