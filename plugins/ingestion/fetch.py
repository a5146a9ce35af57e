"""Fetching a document by URL with a guard against server-side request forgery (SSRF).

- Only `http` and `https`, no credentials in the URL.
- The host is resolved first (an IP literal in any form a resolver accepts: dotted, decimal `2130706433`, octal
  `0177.0.0.1`, hex `0x7f.1`, short `127.1`, IPv6, IPv4-mapped IPv6), and every address it resolves to must be a
  public one: private, loopback, link-local (cloud metadata at 169.254.169.254), CGNAT (100.64/10), multicast,
  reserved and unspecified addresses are refused, as are IPv6 addresses that embed such an IPv4 address (mapped,
  NAT64, 6to4).
- The connection goes to the checked address itself (the name travels only in `Host` and TLS SNI), so a second DNS
  answer cannot swap in another address between the check and the connection.
- Redirects are followed by hand, each target checked like the first URL; at most `max_redirects`.
- The body is read up to `max_bytes` (refused past it, `Content-Length` checked first) within `timeout_seconds`.

`Resolver` is injectable: the ingestion settings map names to addresses (FAAS_INGESTION_FETCH_HOSTS) ahead of DNS,
which is how tests point a name at 127.0.0.1 to prove it is refused. Loopback is allowed only with the test-only
setting FAAS_INGESTION_FETCH_ALLOW_LOOPBACK.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]
_LEGACY_IPV4 = re.compile(r"^(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}$", re.IGNORECASE)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")


class FetchRefused(Exception):
    """The URL may not be fetched (scheme, address) or its answer is unusable: the message says why."""


@dataclass(frozen=True)
class Fetched:
    url: str  # after redirects
    data: bytes
    content_type: str | None


@dataclass(frozen=True)
class FetchPolicy:
    max_bytes: int
    timeout_seconds: float
    max_redirects: int = 5
    allow_loopback: bool = False  # tests only


def system_resolver(hosts: Mapping[str, str] | None = None) -> Resolver:
    """DNS through the event loop's getaddrinfo, after the static `hosts` map (name -> address)."""
    fixed = {k.lower(): v for k, v in (hosts or {}).items()}

    async def resolve(host: str, port: int) -> list[str]:
        if host.lower() in fixed:
            return [fixed[host.lower()]]
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise FetchRefused(f"the host {host!r} cannot be resolved ({exc.strerror})") from None
        return [str(info[4][0]) for info in infos]

    return resolve


def literal_address(host: str) -> IPAddress | None:
    """The address `host` spells, in any form a C resolver accepts (see the module docstring), else None."""
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return ipaddress.ip_address(bare.split("%")[0])
    except ValueError:
        pass
    if _LEGACY_IPV4.match(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            raise FetchRefused(f"{host!r} is not a valid IPv4 address") from None
    return None


def refusal(address: IPAddress, *, allow_loopback: bool = False) -> str | None:
    """Why `address` may not be fetched from, or None when it is a public address."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            why = refusal(embedded, allow_loopback=allow_loopback)
            return None if why is None else f"it embeds {embedded}, {why}"
    if address.is_loopback:
        return None if allow_loopback else "a loopback address"
    if isinstance(address, ipaddress.IPv4Address) and address in _CGNAT:
        return "a carrier-grade NAT (shared) address"
    if address.is_link_local:
        return "a link-local address (cloud metadata lives there)"
    if address.is_multicast:
        return "a multicast address"
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_private or address.is_reserved or not address.is_global:
        return "a private or reserved address"
    return None


async def check_url(url: str, resolver: Resolver, policy: FetchPolicy) -> tuple[httpx.URL, str]:
    """The URL and the one address to connect to; FetchRefused when the URL or any address it resolves to is
    not allowed."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise FetchRefused(f"only http and https URLs can be fetched (got {scheme or 'no scheme'!r})")
    if parts.username is not None or parts.password is not None:
        raise FetchRefused("a URL with credentials in it is refused")
    host = parts.hostname
    if not host:
        raise FetchRefused("the URL has no host")
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        raise FetchRefused("the URL's port is not valid") from None
    literal = literal_address(host)
    addresses = (
        [literal]
        if literal is not None
        else [ipaddress.ip_address(a.split("%")[0]) for a in await resolver(host, port)]
    )
    if not addresses:
        raise FetchRefused(f"the host {host!r} resolves to no address")
    for address in addresses:
        why = refusal(address, allow_loopback=policy.allow_loopback)
        if why is not None:
            raise FetchRefused(f"the host {host!r} resolves to {address}, {why}: it is not fetched")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise FetchRefused(f"the URL is not valid: {exc}") from None
    return parsed, str(addresses[0])


async def fetch(url: str, *, resolver: Resolver, policy: FetchPolicy) -> Fetched:
    """GET `url` under the guard (module docstring). FetchRefused for a refused address, a non-2xx answer, too many
    redirects, too large a body or too slow an answer."""
    try:
        async with asyncio.timeout(policy.timeout_seconds):
            return await _fetch(url, resolver, policy)
    except TimeoutError:
        raise FetchRefused(f"the URL did not answer within {policy.timeout_seconds:g} s") from None


async def _fetch(url: str, resolver: Resolver, policy: FetchPolicy) -> Fetched:
    timeout = httpx.Timeout(policy.timeout_seconds)
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False) as client:
        for _ in range(policy.max_redirects + 1):
            target, address = await check_url(url, resolver, policy)
            host = target.host
            pinned = target.copy_with(host=address)
            headers = {"Host": target.netloc.decode("ascii"), "Accept": "*/*", "User-Agent": "motadata-faas-ingest"}
            extensions = {"sni_hostname": host} if target.scheme == "https" else {}
            request = client.build_request("GET", pinned, headers=headers, extensions=extensions)
            try:
                response = await client.send(request, stream=True)
            except httpx.HTTPError as exc:
                raise FetchRefused(f"the URL could not be fetched: {type(exc).__name__}") from None
            try:
                if response.status_code in (301, 302, 303, 307, 308):
                    location = response.headers.get("location")
                    if not location:
                        raise FetchRefused(f"the URL redirected ({response.status_code}) without a Location")
                    url = urljoin(url, location)
                    continue
                if not 200 <= response.status_code < 300:
                    raise FetchRefused(f"the URL answered HTTP {response.status_code}")
                declared = response.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > policy.max_bytes:
                    raise FetchRefused(
                        f"the document is {int(declared):,} bytes, over the limit of {policy.max_bytes:,}"
                    )
                body = bytearray()
                async for piece in response.aiter_bytes():
                    body += piece
                    if len(body) > policy.max_bytes:
                        raise FetchRefused(f"the document is over the limit of {policy.max_bytes:,} bytes")
                return Fetched(url=url, data=bytes(body), content_type=response.headers.get("content-type"))
            finally:
                await response.aclose()
    raise FetchRefused(f"the URL redirected more than {policy.max_redirects} times")
