"""`http_request`'s guard against server-side request forgery.

A URL is fetched only when its host is on the agent's allowlist and every address the host resolves to is public
(`ipaddress.is_global`): private, loopback, link-local (the cloud metadata service at 169.254.169.254 among them),
shared, multicast and reserved addresses are refused. The connection goes to the very address that was checked
(the Host header and TLS server name keep the name), so a DNS answer that changes between the check and the
connection (rebinding) cannot slip through. Redirects are followed by hand, each hop checked the same way.

An operator may open chosen private networks (`FAAS_AGENTS_HTTP_ALLOW_NETWORKS`, e.g. an internal API); the
metadata addresses stay refused whatever it says.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from app.errors import InvalidInput, UpstreamFailed

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
METADATA = frozenset(ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200"))
MAX_REDIRECTS = 5
MAX_BODY_BYTES = 1_000_000
BODY_CHARS = 16_000  # of the body handed back to the model


def host_allowed(host: str, allowlist: Sequence[str]) -> bool:
    host = host.lower().rstrip(".")
    for entry in allowlist:
        entry = entry.lower()
        if entry.startswith("*."):
            if host.endswith(entry[1:]) and host != entry[2:]:
                return True
        elif host == entry:
            return True
    return False


class HttpGuard:
    def __init__(self, *, allow_networks: Sequence[Network] = (), timeout: float = 10.0) -> None:
        self.allow_networks = tuple(allow_networks)
        self.timeout = timeout

    def address_allowed(self, ip: IPAddress) -> bool:
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if ip in METADATA:
            return False
        if ip.is_global and not ip.is_multicast:
            return True
        return any(ip in net for net in self.allow_networks if net.version == ip.version)

    async def resolve(self, host: str, port: int) -> IPAddress:
        """The address to connect to; InvalidInput when any address of `host` is not allowed."""
        try:
            literal: IPAddress | None = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            literal = None
        if literal is not None:
            found = [literal]
        else:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except socket.gaierror:
                raise InvalidInput(f"the host {host!r} does not resolve") from None
            found = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
        refused = [str(ip) for ip in found if not self.address_allowed(ip)]
        if refused or not found:
            raise InvalidInput(f"the host {host!r} resolves to a private or reserved address ({', '.join(refused)})")
        return found[0]

    async def fetch(self, url: str, *, method: str, body: str | None, allowlist: Sequence[str]) -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=self.timeout, follow_redirects=False, trust_env=False) as client:
            for _ in range(MAX_REDIRECTS + 1):
                response, content = await self._hop(client, url, method=method, body=body, allowlist=allowlist)
                location = response.headers.get("location")
                if response.status_code in (301, 302, 303, 307, 308) and location:
                    url = urljoin(url, location)
                    if response.status_code in (301, 302, 303):
                        method, body = "GET", None
                    continue
                return response_json(response, content)
        raise InvalidInput(f"more than {MAX_REDIRECTS} redirects")

    async def _hop(
        self, client: httpx.AsyncClient, url: str, *, method: str, body: str | None, allowlist: Sequence[str]
    ) -> tuple[httpx.Response, bytes]:
        parts = urlsplit(url)
        host = parts.hostname
        if parts.scheme not in ("http", "https") or not host:
            raise InvalidInput(f"only http and https URLs can be fetched (got {url[:200]!r})")
        if parts.username or parts.password:
            raise InvalidInput("a URL with credentials cannot be fetched")
        if not host_allowed(host, allowlist):
            raise InvalidInput(f"the host {host!r} is not on this agent's http_allowlist")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        ip = await self.resolve(host, port)
        netloc = f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"
        target = urlunsplit(parts._replace(netloc=netloc))
        headers = {"host": parts.netloc.rsplit("@", 1)[-1]}
        request = client.build_request(method, target, headers=headers, content=body, extensions={"sni_hostname": host})
        chunks: list[bytes] = []
        try:
            response = await client.send(request, stream=True)
            try:
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > MAX_BODY_BYTES:
                        break
                    chunks.append(chunk)
            finally:
                await response.aclose()
        except httpx.HTTPError as exc:
            raise UpstreamFailed(f"the request to {host} failed: {type(exc).__name__}") from None
        return response, b"".join(chunks)


def response_json(response: httpx.Response, content: bytes) -> dict[str, Any]:
    text = content.decode(response.encoding or "utf-8", errors="replace")
    return {
        "status": response.status_code,
        "content_type": response.headers.get("content-type"),
        "body": text[:BODY_CHARS],
        "truncated": len(text) > BODY_CHARS,
    }
