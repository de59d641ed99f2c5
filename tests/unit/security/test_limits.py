import ipaddress

import pytest

from appliance.security.limits import ClientAddresses, Decision, Rule, client_address, networks

TRUSTED = networks("127.0.0.1/32,::1/128,10.0.0.0/8")


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("203.0.113.9", None, "203.0.113.9"),  # straight in
        ("203.0.113.9", "198.51.100.1", "203.0.113.9"),  # an untrusted peer's header is ignored
        ("127.0.0.1", "198.51.100.1", "198.51.100.1"),  # through the local nginx
        ("127.0.0.1", "1.2.3.4, 198.51.100.1", "198.51.100.1"),  # the left part may be forged
        ("127.0.0.1", "198.51.100.1, 10.1.2.3", "198.51.100.1"),  # two proxies of ours
        ("127.0.0.1", None, "127.0.0.1"),
        ("127.0.0.1", "not-an-address", "127.0.0.1"),
        ("::1", "2001:db8::7", "2001:db8::7"),
    ],
)
def test_the_client_address_is_the_first_untrusted_hop_from_the_right(peer, forwarded, client):
    assert client_address(peer, forwarded, TRUSTED) == client


def test_client_addresses_answer_as_client_address_and_remember_only_a_proxy_s_header():
    addresses = ClientAddresses(TRUSTED)
    long_header = ", ".join(["198.51.100.1"] * 40)  # past what is remembered
    pairs = [
        ("127.0.0.1", "1.2.3.4, 198.51.100.1"),
        ("203.0.113.9", "forged by the client itself"),
        ("::1", "x"),
        ("127.0.0.1", long_header),
        ("127.0.0.1", None),
        (None, "1.2.3.4"),
    ]
    for _ in range(3):
        assert [addresses.of(*pair) for pair in pairs] == [
            client_address(*pair, TRUSTED) for pair in pairs
        ]
    # what a proxy forwarded, short enough: remembered; a client's own header: never
    assert addresses._forwarded.cache_info().currsize == 2


def test_headers_say_the_policy_what_is_left_and_when_it_resets():
    rule = Rule("auth-failures", "ip", 20)
    assert Decision(rule, 5, 42).headers() == {
        "RateLimit-Policy": '"auth-failures";q=20;w=60',
        "RateLimit": '"auth-failures";r=15;t=42',
    }
    refused = Decision(rule, 21, 42).refuse()
    assert refused.status == 429 and refused.headers()["Retry-After"] == "42"
    assert refused.headers()["RateLimit"] == '"auth-failures";r=0;t=42'


def test_networks_reads_addresses_and_networks():
    assert networks(" 127.0.0.1 , ::1/128,") == [
        ipaddress.ip_network("127.0.0.1/32"),
        ipaddress.ip_network("::1/128"),
    ]
