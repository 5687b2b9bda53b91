"""The outbound URL guard: which addresses webhooks may reach, and names that resolve to them."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dialer.errors import UnsafeWebhookURL, ValidationFailed
from dialer.webhooks.urlguard import UrlGuard, address_problem, parse_target

REFUSED = {
    "127.0.0.1": "loopback",
    "127.9.9.9": "loopback",
    "::1": "loopback",
    "10.1.2.3": "private",
    "172.16.0.1": "private",
    "172.31.255.255": "private",
    "192.168.1.10": "private",
    "fc00::1": "private",
    "fd12:3456::1": "private",
    "169.254.169.254": "link-local",  # cloud metadata
    "fe80::1": "link-local",
    "100.64.0.1": "CGNAT",
    "100.127.255.254": "CGNAT",
    "0.0.0.0": "unspecified",
    "::": "unspecified",
    "224.0.0.1": "multicast",
    "239.255.255.250": "multicast",
    "ff02::1": "multicast",
    "240.0.0.1": "reserved",
    "255.255.255.255": "",
    "192.0.2.1": "",  # documentation range, not global
    "::ffff:127.0.0.1": "loopback",  # IPv4-mapped
    "::ffff:10.0.0.1": "private",
    "64:ff9b::a00:1": "private",  # NAT64 of 10.0.0.1
    "2002:7f00:1::": "loopback",  # 6to4 of 127.0.0.1
}

ALLOWED = [
    "93.184.216.34",
    "8.8.8.8",
    "1.1.1.1",
    "2606:4700:4700::1111",
    "100.128.0.1",
    "172.32.0.1",
]


@pytest.mark.parametrize("address", sorted(REFUSED))
def test_non_public_addresses_are_refused(address: str) -> None:
    problem = address_problem(address)
    assert problem is not None
    assert REFUSED[address].lower() in problem.lower()


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_pass(address: str) -> None:
    assert address_problem(address) is None


@given(st.ip_addresses(network="10.0.0.0/8") | st.ip_addresses(network="192.168.0.0/16"))
def test_every_rfc1918_address_is_refused(ip: ipaddress.IPv4Address) -> None:
    assert address_problem(ip) == "private address"


@given(st.ip_addresses(network="100.64.0.0/10"))
def test_every_cgnat_address_is_refused(ip: ipaddress.IPv4Address) -> None:
    assert address_problem(ip) == "shared (CGNAT) address"


def fixed(table: dict[str, list[str]]) -> tuple[UrlGuard, list[str]]:
    calls: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        calls.append(host)
        if host not in table:
            raise OSError(f"unknown host {host}")
        return table[host]

    return UrlGuard(allow_private=False, resolver=resolver), calls


def test_a_name_that_resolves_to_a_private_address_is_refused() -> None:
    guard, _ = fixed({"crm.internal.example": ["10.0.0.7"]})
    with pytest.raises(UnsafeWebhookURL, match=r"10\.0\.0\.7.*private"):
        guard.check_url("https://crm.internal.example/hook")


def test_any_bad_address_among_several_is_enough_to_refuse() -> None:
    guard, _ = fixed({"mixed.example": ["93.184.216.34", "2606:4700::1", "127.0.0.1"]})
    with pytest.raises(UnsafeWebhookURL, match="loopback"):
        guard.check_url("https://mixed.example/")


def test_a_public_name_passes() -> None:
    guard, _ = fixed({"hooks.example": ["93.184.216.34"]})
    target = guard.check_url("https://hooks.example:8443/x?y=1")
    assert (target.scheme, target.host, target.port) == ("https", "hooks.example", 8443)


def test_localhost_really_resolved_is_refused() -> None:
    guard = UrlGuard(allow_private=False)  # the system resolver
    with pytest.raises(UnsafeWebhookURL, match="loopback"):
        guard.check_url("https://localhost/hook")


@pytest.mark.parametrize(
    "url", ["https://127.0.0.1/", "https://[::1]:8443/", "https://169.254.169.254/latest"]
)
def test_literal_private_addresses_are_refused(url: str) -> None:
    with pytest.raises(UnsafeWebhookURL):
        UrlGuard(allow_private=False).check_url(url)


def test_unresolvable_host_is_refused_at_registration() -> None:
    guard, _ = fixed({})
    with pytest.raises(UnsafeWebhookURL, match="does not resolve"):
        guard.check_url("https://nowhere.example/")


def test_allow_private_permits_loopback_and_http() -> None:
    guard = UrlGuard(allow_private=True)
    assert guard.check_url("http://127.0.0.1:8080/hook").port == 8080
    assert guard.check_url("https://localhost/hook").host == "localhost"


def test_plain_http_is_refused_unless_private_targets_are_allowed() -> None:
    guard, _ = fixed({"hooks.example": ["93.184.216.34"]})
    with pytest.raises(UnsafeWebhookURL, match="https"):
        guard.check_url("http://hooks.example/")


@pytest.mark.parametrize(
    "url",
    [
        "",
        "hooks.example/path",
        "ftp://hooks.example/",
        "https://",
        "https://user:pw@hooks.example/",
        "https://hooks.example/ x",
        " https://hooks.example/",
        "https://hooks.example:99999/",
        "https://hooks.example/#frag",
    ],
)
def test_malformed_urls_name_the_url_field(url: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        parse_target(url, allow_http=True)
    assert info.value.problems[0].field == "url"


def test_resolution_is_cached_briefly() -> None:
    now = [0.0]
    calls: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        calls.append(host)
        return ["93.184.216.34"]

    guard = UrlGuard(
        allow_private=False, resolver=resolver, cache_ttl_s=30, monotonic=lambda: now[0]
    )
    for _ in range(5):
        guard.addresses("hooks.example", 443)
    assert calls == ["hooks.example"]
    now[0] = 31.0
    guard.addresses("hooks.example", 443)
    assert calls == ["hooks.example", "hooks.example"]


def test_a_changed_answer_is_seen_after_the_cache_expires() -> None:
    """DNS rebinding: public at registration, private later. The guard refuses once it sees it."""
    now = [0.0]
    answer = ["93.184.216.34"]
    guard = UrlGuard(
        allow_private=False, resolver=lambda h, p: list(answer), monotonic=lambda: now[0]
    )
    guard.check_url("https://rebind.example/")
    answer[:] = ["127.0.0.1"]
    now[0] = 100.0
    with pytest.raises(UnsafeWebhookURL, match="loopback"):
        guard.addresses("rebind.example", 443)
