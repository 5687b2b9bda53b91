"""Outbound URL guard: webhooks may only reach public addresses (DESIGN section 7).

A webhook URL is operator input that makes our workers send POST requests from inside our
network, so it is a classic SSRF lever. The guard refuses a URL whose host resolves to ANY
address that is not publicly routable:

    unspecified (0.0.0.0, ::)        loopback (127/8, ::1)
    link-local (169.254/16, fe80::/10, the cloud metadata address lives here)
    multicast                        shared / CGNAT (100.64.0.0/10)
    private (RFC 1918, fc00::/7)     reserved and other non-global ranges
    IPv4 embedded in IPv6 (::ffff:a.b.c.d, 64:ff9b::/96 NAT64, 2002::/16 6to4) is unwrapped
    and checked as IPv4.

Exceptions, narrowest first:

    `allow_networks` (setting `DIALER_WEBHOOK_ALLOW_NETWORKS`, comma-separated CIDRs, e.g.
    "127.0.0.0/8,::1/128" for receivers on this machine): addresses inside these networks pass;
    every other non-public address is still refused, and plain http is accepted only for a host
    whose addresses all lie inside them. Checked at registration and at connect time alike.
    `LOOPBACK_NETWORKS` is the value tests, the demo and the benches use.
    `allow_private=True` (setting `DIALER_WEBHOOK_ALLOW_PRIVATE`) switches the address check off
    entirely (kept for compatibility; prefer the allow list).

When it is checked
    * at registration: `UrlGuard.check_url` (scheme, shape, resolution, addresses);
    * at send time, on every NEW connection: `GuardedBackend` is the httpx/httpcore network
      backend of the delivery client. It resolves the host through the guard and connects to
      one of the addresses the guard just vetted ("pinning"), so a DNS answer that changes
      between check and connect (DNS rebinding) cannot smuggle a private address in. TLS still
      verifies the certificate against the host name (httpcore passes the name as SNI /
      server_hostname; only the TCP connect uses the IP). A kept-alive pooled connection is
      already bound to a vetted address, so the hot path does no DNS at all.

Resolutions (and refusals) are cached per (host, port) for `cache_ttl_s` (30 s by default) so a
burst of deliveries to a new host does not resolve it once per connection.

Proxies are not supported on purpose: the delivery client ignores `HTTP(S)_PROXY`
(`trust_env=False`), because a proxy would do the resolving and the guard could not pin.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpcore

from dialer.errors import FieldProblem, UnsafeWebhookURL, ValidationFailed

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]
"""(host, port) -> IP address strings. Raises OSError (socket.gaierror) when the name does not
resolve."""

_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

# Receivers on this machine only: what tests, the local demo and the benches allow.
LOOPBACK_NETWORKS = "127.0.0.0/8,::1/128"


def parse_networks(value: str | Iterable[str | IPNetwork]) -> tuple[IPNetwork, ...]:
    """Networks from "cidr,cidr" text or an iterable of CIDRs. ValidationFailed (field
    `webhook_allow_networks`) names each entry that is not a network."""
    parts = value.split(",") if isinstance(value, str) else list(value)
    networks: list[IPNetwork] = []
    problems: list[FieldProblem] = []
    for part in parts:
        if isinstance(part, ipaddress.IPv4Network | ipaddress.IPv6Network):
            networks.append(part)
            continue
        text = str(part).strip()
        if not text:
            continue
        try:
            networks.append(ipaddress.ip_network(text, strict=True))
        except ValueError as exc:
            problems.append(
                FieldProblem(
                    "webhook_allow_networks",
                    f"{text!r} is not a network in CIDR form such as 127.0.0.0/8 or ::1/128 "
                    f"({exc})",
                )
            )
    if problems:
        raise ValidationFailed(problems)
    return tuple(dict.fromkeys(networks))


def system_resolver(host: str, port: int) -> list[str]:
    """Every address `socket.getaddrinfo` returns for a TCP connection, in its order, unique."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: list[str] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        ip = str(sockaddr[0]).split("%", 1)[0]  # drop an IPv6 scope id ("fe80::1%eth0")
        if ip not in seen:
            seen.append(ip)
    return seen


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    return None


def address_problem(address: str | IPAddress) -> str | None:
    """Why outbound webhooks may not reach `address`, or None when it is a public address."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None:
            problem = address_problem(inner)
            return f"{problem} (embedded in {ip})" if problem else None
    if ip.is_unspecified:
        return "unspecified address"
    if ip.is_loopback:
        return "loopback address"
    if ip.is_link_local:
        return "link-local address"
    if ip.is_multicast:
        return "multicast address"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT:
        return "shared (CGNAT) address"
    if ip.is_reserved:
        return "reserved address"
    if ip.is_private:
        return "private address"
    if not ip.is_global:
        return "non-public address"
    return None


@dataclass(frozen=True)
class Target:
    """The parts of a webhook URL the guard cares about."""

    scheme: str
    host: str
    port: int


def parse_target(url: str, *, allow_http: bool) -> Target:
    """Check the URL's shape and scheme. ValidationFailed for a malformed URL, UnsafeWebhookURL
    for plain http when it is not allowed."""

    def bad(message: str) -> ValidationFailed:
        return ValidationFailed([FieldProblem("url", message)])

    if not isinstance(url, str) or not url or url != url.strip() or any(c.isspace() for c in url):
        raise bad("must be an absolute http(s) URL without spaces")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise bad(f"is not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise bad("must start with https:// (or http:// when private targets are allowed)")
    if not parts.hostname:
        raise bad("has no host")
    if parts.username is not None or parts.password is not None:
        raise bad("must not carry credentials; receivers authenticate the signature instead")
    if parts.fragment:
        raise bad("must not have a #fragment")
    if scheme == "http" and not allow_http:
        raise UnsafeWebhookURL(_HTTP_REFUSED.format(url=url))
    return Target(scheme, parts.hostname, port or (443 if scheme == "https" else 80))


_HTTP_REFUSED = (
    "{url}: plain http is refused; use https (http is only allowed to a host whose addresses "
    "are all in DIALER_WEBHOOK_ALLOW_NETWORKS, e.g. 127.0.0.0/8 for a receiver on this machine)"
)


class UrlGuard:
    """Resolves webhook hosts and refuses non-public addresses, except those inside
    `allow_networks` (or every address when `allow_private`)."""

    def __init__(
        self,
        *,
        allow_private: bool = False,
        allow_networks: str | Iterable[str | IPNetwork] = (),
        resolver: Resolver = system_resolver,
        cache_ttl_s: float = 30.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.allow_private = allow_private
        self.allow_networks = parse_networks(allow_networks)
        self._resolver = resolver
        self._ttl = cache_ttl_s
        self._monotonic = monotonic
        self._lock = threading.Lock()
        # (host, port) -> (expires, vetted addresses, refusal or None)
        self._cache: dict[tuple[str, int], tuple[float, list[str], str | None]] = {}

    def check_url(self, url: str) -> Target:
        """Registration-time check: shape, scheme and (unless private targets are allowed)
        every address the host resolves to. Raises ValidationFailed or UnsafeWebhookURL."""
        target = parse_target(url, allow_http=self.allow_private or bool(self.allow_networks))
        if self.allow_private:
            return target
        try:
            addresses = self.addresses(target.host, target.port)
        except OSError as exc:
            raise UnsafeWebhookURL(
                f"{target.host} does not resolve ({exc}); cannot check where it points"
            ) from None
        if target.scheme == "http" and not all(self.allowed(a) for a in addresses):
            # Plain http only to networks the operator listed (a receiver on this machine):
            # anything else must be https.
            raise UnsafeWebhookURL(_HTTP_REFUSED.format(url=url))
        return target

    def allowed(self, address: str | IPAddress) -> bool:
        """True when `address` (or the IPv4 address embedded in it) is in `allow_networks`."""
        if not self.allow_networks:
            return False
        try:
            ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        except ValueError:
            return False
        candidates: list[IPAddress] = [ip]
        if isinstance(ip, ipaddress.IPv6Address):
            inner = _embedded_ipv4(ip)
            if inner is not None:
                candidates.append(inner)
        return any(c in net for c in candidates for net in self.allow_networks)

    def addresses(self, host: str, port: int) -> list[str]:
        """The host's addresses, all vetted. Raises UnsafeWebhookURL when any is refused and
        OSError when the name does not resolve. Cached for `cache_ttl_s`."""
        key = (host.lower().rstrip("."), port)
        now = self._monotonic()
        with self._lock:
            hit = self._cache.get(key)
        if hit is None or hit[0] <= now:
            addresses = self._resolver(key[0], port)
            if not addresses:
                raise OSError(f"{host} has no addresses")
            refusal = None if self.allow_private else self._refusal(host, addresses)
            hit = (now + self._ttl, addresses, refusal)
            with self._lock:
                if len(self._cache) > 1024:
                    self._cache.clear()
                self._cache[key] = hit
        if hit[2] is not None:
            raise UnsafeWebhookURL(hit[2])
        return hit[1]

    def _refusal(self, host: str, addresses: Iterable[str]) -> str | None:
        for address in addresses:
            if self.allowed(address):
                continue
            try:
                problem = address_problem(address)
            except ValueError:
                problem = "unparseable address"
            if problem is not None:
                return (
                    f"{host} resolves to {address}, a {problem}; outbound webhooks may only "
                    "reach public addresses (add the receiver's network to "
                    "DIALER_WEBHOOK_ALLOW_NETWORKS to allow it, e.g. 127.0.0.0/8 for a receiver "
                    "on this machine)"
                )
        return None


class GuardedBackend(httpcore.SyncBackend):
    """httpcore network backend that connects only to addresses the guard vetted (pinning).

    UnsafeWebhookURL propagates unchanged through httpx (it maps only httpcore's own errors),
    so the caller sees exactly why no connection was made.
    """

    def __init__(self, guard: UrlGuard) -> None:
        self.guard = guard

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = self.guard.addresses(host, port)
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        last: Exception | None = None
        for address in addresses:
            try:
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last
