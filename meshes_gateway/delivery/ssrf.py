"""SSRF protection: which URLs and addresses the gateway may send to.

Every address is checked after unwrapping the IPv6 forms that embed an IPv4
address (mapped, compatible, NAT64, 6to4), so `::ffff:127.0.0.1` is loopback.
The check runs when a connection is saved (on the URL and on every address its
host resolves to) and again at connect time inside the HTTP client's resolver,
so a DNS answer that changes between the two (rebinding) is refused too.
`MESHES_ALLOW_NETWORKS` exempts chosen networks on purpose.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Sequence
from typing import Any

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_DENY_TEXT = (
    # IPv4
    "0.0.0.0/8",  # "this" network
    "10.0.0.0/8",  # private
    "100.64.0.0/10",  # CGNAT (incl. 100.100.100.200, Alibaba metadata)
    "127.0.0.0/8",  # loopback
    "169.254.0.0/16",  # link-local (incl. 169.254.169.254, cloud metadata)
    "172.16.0.0/12",  # private
    "192.0.0.0/24",  # IETF protocol assignments
    "192.0.2.0/24",  # documentation
    "192.88.99.0/24",  # 6to4 relay anycast
    "192.168.0.0/16",  # private
    "198.18.0.0/15",  # benchmarking
    "198.51.100.0/24",  # documentation
    "203.0.113.0/24",  # documentation
    "224.0.0.0/4",  # multicast
    "240.0.0.0/4",  # reserved, incl. 255.255.255.255 broadcast
    # IPv6
    "::/128",  # unspecified
    "::1/128",  # loopback
    "::ffff:0:0/96",  # IPv4-mapped (denied as such if unwrapping is bypassed)
    "64:ff9b:1::/48",  # local-use NAT64
    "100::/64",  # discard-only
    "2001::/23",  # IETF protocol assignments (incl. Teredo, benchmarking)
    "2001:db8::/32",  # documentation
    "3fff::/20",  # documentation
    "fc00::/7",  # unique local (incl. fd00:ec2::254, AWS metadata)
    "fe80::/10",  # link-local
    "fec0::/10",  # site-local (deprecated)
    "ff00::/8",  # multicast
)
DENY_NETWORKS: tuple[IPNetwork, ...] = tuple(ipaddress.ip_network(n) for n in _DENY_TEXT)

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SIX_TO_FOUR = ipaddress.ip_network("2002::/16")


class AddressDenied(OSError):
    """The destination is an address the gateway must not send to."""


class UrlRefused(ValueError):
    """A connection URL that is not acceptable (scheme, host, address)."""


def unwrap(ip: IPAddress) -> IPAddress:
    """The IPv4 address embedded in an IPv6 address, if any, else the address itself."""
    if isinstance(ip, ipaddress.IPv4Address):
        return ip
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    packed = int(ip)
    # IPv4-compatible (::a.b.c.d, deprecated) but not :: or ::1 themselves.
    if packed >> 32 == 0 and packed > 1:
        return ipaddress.IPv4Address(packed)
    return ip


class AddressPolicy:
    """The deny table plus the networks a self-hoster allowed on purpose."""

    def __init__(self, allow_networks: Iterable[str] = (), allow_http: bool = False) -> None:
        self.allowed: tuple[IPNetwork, ...] = tuple(
            ipaddress.ip_network(n, strict=False) for n in allow_networks
        )
        self.allow_http = allow_http

    def is_denied(self, address: str | IPAddress) -> bool:
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        candidates = {ip, unwrap(ip)}
        for candidate in candidates:
            if any(candidate in net for net in self.allowed if net.version == candidate.version):
                return False
        return any(
            candidate in net
            for candidate in candidates
            for net in DENY_NETWORKS
            if net.version == candidate.version
        )

    def check_url(self, raw: str) -> URL:
        """Parse and vet a URL without touching the network; returns the normalised URL."""
        try:
            url = URL(raw.strip())
        except (ValueError, TypeError) as exc:
            raise UrlRefused("not a valid URL") from exc
        scheme = (url.scheme or "").lower()
        if scheme not in {"http", "https"}:
            raise UrlRefused("only http(s) URLs are allowed")
        if scheme == "http" and not self.allow_http:
            raise UrlRefused("plain http is refused (https only; MESHES_ALLOW_HTTP=1 allows it)")
        if url.user is not None or url.password is not None:
            raise UrlRefused("credentials in the URL are refused; use the connection's auth")
        host = (url.raw_host or "").rstrip(".").lower()
        if not host:
            raise UrlRefused("the URL has no host")
        literal = ip_literal(host)
        if literal is not None:
            if not _canonical_literal(host):
                # `2130706433`, `0x7f000001`, `127.1`, `0177.0.0.1`: stacks disagree on
                # what these mean, so the only safe reading is none at all.
                raise UrlRefused("write IP addresses in their plain dotted or bracketed form")
            if self.is_denied(literal):
                raise UrlRefused("the URL points at a private, loopback or reserved address")
        return url

    def check_resolved(self, addresses: Sequence[str]) -> None:
        if not addresses:
            raise UrlRefused("the host does not resolve")
        if any(self.is_denied(a) for a in addresses):
            raise UrlRefused("the host resolves to a private, loopback or reserved address")


def _canonical_literal(host: str) -> bool:
    """True for `a.b.c.d` in plain decimal and for bracketed IPv6."""
    if ":" in host:
        return True
    parts = host.split(".")
    return len(parts) == 4 and all(p.isdigit() and str(int(p)) == p for p in parts)


def ip_literal(host: str) -> IPAddress | None:
    """The address a host names literally, including odd IPv4 spellings, else None.

    `inet_aton` accepts what many HTTP stacks accept (`2130706433`, `0x7f000001`,
    `127.1`, `0177.0.0.1`), so checking with it catches every spelling that
    would reach an address, not just the dotted quad.
    """
    host = host.strip("[]")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


async def vet_host(policy: AddressPolicy, resolver: AbstractResolver, url: URL) -> None:
    """Create-time check: every address the URL's host resolves to must be allowed."""
    host = (url.raw_host or "").rstrip(".")
    if ip_literal(host) is not None:
        return  # checked by `check_url`
    try:
        results = await resolver.resolve(host, url.port or 443, socket.AF_UNSPEC)
    except OSError:
        results = []
    policy.check_resolved([r["host"] for r in results])


class GuardedResolver(AbstractResolver):
    """A resolver for the HTTP client that refuses denied addresses (resolve-and-pin).

    The connector connects only to what this returns, so an address checked
    here is the address used: there is no second lookup to rebind.
    """

    def __init__(self, policy: AddressPolicy, inner: AbstractResolver | None = None) -> None:
        self._policy = policy
        self._inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        # One denied answer refuses the host: a name that resolves into a private
        # network is suspect, and falling back to its other addresses would
        # still send the request somewhere the operator did not approve.
        if not results or any(self._policy.is_denied(r["host"]) for r in results):
            raise AddressDenied(f"{host} resolves to a denied address")
        return results

    async def close(self) -> None:
        await self._inner.close()


def denial_in(exc: BaseException) -> bool:
    """True when an exception (or its cause chain) is an `AddressDenied`."""
    seen: Any = exc
    while seen is not None:
        if isinstance(seen, AddressDenied):
            return True
        seen = getattr(seen, "os_error", None) or seen.__cause__
    return False
