"""The outbound URL guard: which addresses webhooks may reach, and names that resolve to them."""

from __future__ import annotations

import ipaddress

import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dialer.errors import UnsafeWebhookURL, ValidationFailed
from dialer.settings import Settings
from dialer.webhooks.urlguard import (
    LOOPBACK_NETWORKS,
    UrlGuard,
    address_problem,
    parse_networks,
    parse_target,
)

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


# -- the allow list (DIALER_WEBHOOK_ALLOW_NETWORKS) -------------------------------------------


def loopback_only(table: dict[str, list[str]]) -> UrlGuard:
    def resolver(host: str, port: int) -> list[str]:
        if host in table:
            return table[host]
        try:
            return [str(ipaddress.ip_address(host))]  # a literal resolves to itself
        except ValueError:
            raise OSError(f"unknown host {host}") from None

    return UrlGuard(allow_networks=LOOPBACK_NETWORKS, resolver=resolver)


def test_the_allow_list_lets_loopback_through_including_plain_http() -> None:
    guard = loopback_only({"receiver.local": ["127.0.0.1", "::1"]})
    assert guard.check_url("http://127.0.0.1:8080/hook").port == 8080
    assert guard.check_url("https://[::1]:8443/hook").host == "::1"
    assert guard.check_url("http://receiver.local:9000/hook").host == "receiver.local"
    assert guard.addresses("receiver.local", 9000) == ["127.0.0.1", "::1"]  # connect time
    assert guard.allowed("::ffff:127.0.0.1")  # IPv4-mapped loopback is loopback


def test_the_system_resolver_s_localhost_passes_a_loopback_allow_list() -> None:
    guard = UrlGuard(allow_networks=LOOPBACK_NETWORKS)
    assert guard.check_url("http://localhost:8080/hook").host == "localhost"


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("10.0.0.1", "private"),
        ("169.254.169.254", "link-local"),
        ("100.64.0.1", "CGNAT"),
        ("192.168.1.1", "private"),
        ("::ffff:10.0.0.1", "private"),
    ],
)
def test_the_allow_list_still_refuses_every_other_private_address(
    address: str, problem: str
) -> None:
    guard = loopback_only({"inside.example": [address]})
    literal = f"[{address}]" if ":" in address else address
    for url in (f"https://{literal}/hook", "https://inside.example/hook"):
        with pytest.raises(UnsafeWebhookURL, match=problem):
            guard.check_url(url)  # at registration
    with pytest.raises(UnsafeWebhookURL, match=problem):
        guard.addresses("inside.example", 443)  # at connect time
    with pytest.raises(UnsafeWebhookURL, match="DIALER_WEBHOOK_ALLOW_NETWORKS"):
        guard.addresses(address, 443)


def test_a_name_resolving_to_loopback_and_a_private_address_is_refused() -> None:
    guard = loopback_only({"mixed.local": ["127.0.0.1", "10.0.0.1"]})
    with pytest.raises(UnsafeWebhookURL, match=r"10\.0\.0\.1"):
        guard.check_url("https://mixed.local/hook")


def test_plain_http_to_a_public_host_stays_refused_with_an_allow_list() -> None:
    guard = loopback_only({"hooks.example": ["93.184.216.34"]})
    assert guard.check_url("https://hooks.example/").host == "hooks.example"
    with pytest.raises(UnsafeWebhookURL, match="plain http"):
        guard.check_url("http://hooks.example/")


def test_an_allow_list_of_one_private_network_allows_only_that_network() -> None:
    guard = UrlGuard(allow_networks=["10.20.0.0/16"], resolver=lambda h, p: [h])
    assert guard.check_url("https://10.20.3.4/hook").host == "10.20.3.4"
    with pytest.raises(UnsafeWebhookURL, match="private"):
        guard.check_url("https://10.21.0.1/hook")
    with pytest.raises(UnsafeWebhookURL, match="loopback"):
        guard.check_url("https://127.0.0.1/hook")


def test_parse_networks_names_each_bad_entry() -> None:
    assert parse_networks(" 127.0.0.0/8 , ::1/128,") == (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )
    assert parse_networks("") == ()
    with pytest.raises(ValidationFailed) as info:
        parse_networks("127.0.0.0/8,localhost,10.0.0.1/8")
    assert [p.field for p in info.value.problems] == ["webhook_allow_networks"] * 2
    assert "'localhost'" in info.value.problems[0].message
    assert "'10.0.0.1/8'" in info.value.problems[1].message  # host bits set: say what you mean


def test_the_setting_is_validated_and_reaches_the_service_guard(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DIALER_WEBHOOK_ALLOW_NETWORKS", "127.0.0.0/8,::1/128")
    settings = Settings(redis_url="redis://unused")
    assert settings.webhook_allow_networks == "127.0.0.0/8,::1/128"
    guard = UrlGuard(allow_networks=settings.webhook_allow_networks)
    assert guard.allow_networks == parse_networks(LOOPBACK_NETWORKS)
    monkeypatch.setenv("DIALER_WEBHOOK_ALLOW_NETWORKS", "127.0.0.0/8,not-a-network")
    with pytest.raises(pydantic.ValidationError, match="webhook_allow_networks"):
        Settings(redis_url="redis://unused")
