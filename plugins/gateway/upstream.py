"""HTTP to LLM providers: the gateway's only httpx user, on aiohttp's connection pool.

`HttpUpstream` posts JSON, gets JSON and reads server-sent events; every failure comes out as a `ServiceError`
whose class says what happened (the provider's 429 → `RateLimited` with its `Retry-After`, 5xx → `UpstreamFailed`,
timeout → `UpstreamTimeout`, the provider rejecting our request → 4xx), carrying the provider's status and
message. There is no retry loop here: the router decides about fallbacks, and nothing is retried within one
deployment. httpx's default transport caps a Python gateway far below the target (FACTS.md), so requests go
through `httpx_aiohttp.AiohttpTransport`; server-sent events are read with httpx-sse. The hot path, a JSON POST
of ordinary size, goes to aiohttp's client directly: building httpx's request and response models around it cost
~8% of the gateway's CPU under load, for nothing a provider call needs.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import httpx
import orjson
from httpx_sse import EventSource, SSEError

from app.codec import dumps
from app.errors import (
    InvalidInput,
    MalformedRequest,
    NotFound,
    RateLimited,
    ServiceError,
    UpstreamFailed,
    UpstreamTimeout,
)
from app.http_transport import pooled_transport

_JSON = {"content-type": "application/json", "accept": "application/json"}

log = logging.getLogger("faas.gateway.upstream")


def provider_error(status: int, body: bytes, headers: Mapping[str, str], where: str) -> ServiceError:
    """The ServiceError a provider's error response stands for, with its message and retry hint. The router shows
    the tenant none of the text (`router.public_error`); an OpenAI-style `code` and `param` (identifiers such as
    `context_length_exceeded`, `max_tokens`) are kept, so a tenant's SDK can still tell what to change."""
    message = _message(body) or f"HTTP {status}"
    extra: dict[str, Any] = {"upstream_status": status, "upstream": where, **_code_and_param(body)}
    kept: dict[str, str] = {}
    if status == 429:
        # OpenAI's code for a rate limit, when the provider named none (Anthropic has only its error type).
        extra.setdefault("code", "rate_limit_exceeded")
        retry_after = headers.get("retry-after")
        if retry_after:
            kept["Retry-After"] = retry_after
        return RateLimited(f"{where} is rate limiting: {message}", extra=extra, headers=kept)
    if status in (401, 403):
        # Our client is fine; the gateway's own credentials for this provider are not. The provider's text may
        # quote the (masked) key or more, so it goes to the operator's log, never to the tenant.
        log.error("%s refused the gateway's credentials (HTTP %d): %s", where, status, message)
        return UpstreamFailed(f"{where}: the provider refused the gateway's credentials for this model", extra=extra)
    if status == 404:
        return NotFound(f"{where}: {message}", extra=extra)
    if status in (400, 413, 422):
        cls = InvalidInput if status == 422 else MalformedRequest
        return cls(f"{where} rejected the request: {message}", extra=extra)
    if status == 504 or status == 408:
        return UpstreamTimeout(f"{where} timed out: {message}", extra=extra)
    return UpstreamFailed(f"{where} failed with HTTP {status}: {message}", extra=extra)


_IDENTIFIER = re.compile(r"^[a-z][a-z0-9_.\[\]]{0,63}$")


def _code_and_param(body: bytes) -> dict[str, str]:
    """The identifiers of an OpenAI-style error (`{"error": {"type", "code", "param"}}`; Anthropic's has the `type`),
    `type` as `error_type`: the OpenAI routes show them as they came, so an SDK user can branch on them."""
    try:
        err = orjson.loads(body).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        return {}
    if not isinstance(err, dict):
        return {}
    out = {k: v for k in ("code", "param") if isinstance(v := err.get(k), str) and _IDENTIFIER.match(v)}
    if isinstance(kind := err.get("type"), str) and _IDENTIFIER.match(kind):
        out["error_type"] = kind
    return out


def _message(body: bytes) -> str:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:300].decode(errors="replace").strip()
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:500]
        if isinstance(err, str):
            return err[:500]
        if data.get("message"):
            return str(data["message"])[:500]
    return str(data)[:300]


def _transport_error(exc: BaseException, where: str) -> ServiceError:
    """What a failed call to a provider means, from httpx's or aiohttp's exception: only a timeout after connecting
    is the provider being slow; anything else is the provider unreachable."""
    slow = (isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout)) or (
        isinstance(exc, TimeoutError) and not isinstance(exc, aiohttp.ConnectionTimeoutError)
    )
    if slow:
        return UpstreamTimeout(f"{where} did not answer in time", extra={"upstream": where})
    # The exception's text names the provider's host (an internal name, for a proxy): the log gets it, the
    # tenant gets the deployment.
    log.warning("%s is unreachable: %s: %s", where, type(exc).__name__, exc)
    return UpstreamFailed(f"{where} is unreachable ({type(exc).__name__})", extra={"upstream": where})


# Bodies up to this size go through aiohttp directly; larger ones (a long context) through the transport, which
# writes them in pieces (aiohttp warns about a bytes body over 1 MB).
_DIRECT_BODY = 2**20


class HttpUpstream:
    """One pooled client for every provider deployment of this replica."""

    def __init__(self, *, max_connections: int = 512, transport: httpx.AsyncBaseTransport | None = None) -> None:
        # The shared aiohttp-backed transport: httpx's API at aiohttp's speed, with its quirks fixed in one place
        # (each try sent once, connection errors mapped truthfully, large bodies streamed).
        self._transport = transport or pooled_transport(max_connections)
        self._client = httpx.AsyncClient(transport=self._transport, timeout=httpx.Timeout(60.0, connect=5.0))
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _aiohttp(self) -> aiohttp.ClientSession:
        if self._session is None:  # made on first use, inside the running loop
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections), auto_decompress=True
            )
        return self._session

    @staticmethod
    def _timeout(seconds: float) -> httpx.Timeout:
        return httpx.Timeout(seconds, connect=min(seconds, 5.0))

    async def post_json(
        self, url: str, body: dict[str, Any], *, headers: Mapping[str, str], seconds: float, where: str
    ) -> dict[str, Any]:
        content = dumps(body)
        if len(content) <= _DIRECT_BODY:
            return await self._post_direct(url, content, headers=headers, seconds=seconds, where=where)
        # Straight to the transport: the client's auth, redirect and cookie layers cost a third of the upstream
        # call's CPU and do nothing for a JSON POST to a provider.
        request = httpx.Request(
            "POST",
            url,
            content=content,
            headers={**_JSON, **headers},
            extensions={"timeout": self._timeout(seconds).as_dict()},
        )
        try:
            resp = await self._transport.handle_async_request(request)
            try:
                await resp.aread()
            finally:
                await resp.aclose()
        except httpx.HTTPError as exc:
            raise _transport_error(exc, where) from None
        return self._json(resp, where)

    async def _post_direct(
        self, url: str, content: bytes, *, headers: Mapping[str, str], seconds: float, where: str
    ) -> dict[str, Any]:
        # The same limits as `_timeout`: `seconds` to get a connection and for each read, 5 s at most to connect.
        timeout = aiohttp.ClientTimeout(total=None, connect=seconds, sock_connect=min(seconds, 5.0), sock_read=seconds)
        try:
            async with self._aiohttp().post(
                url, data=content, headers={**_JSON, **headers}, timeout=timeout, allow_redirects=False
            ) as resp:
                data = await resp.read()
                status, resp_headers = resp.status, resp.headers
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _transport_error(exc, where) from None
        return self._parse(status, data, resp_headers, where)

    async def get_json(
        self, url: str, *, headers: Mapping[str, str], seconds: float, where: str, params: dict[str, str] | None = None
    ) -> dict[str, Any]:
        try:
            resp = await self._client.get(
                url, headers={"accept": "application/json", **headers}, params=params, timeout=self._timeout(seconds)
            )
        except httpx.HTTPError as exc:
            raise _transport_error(exc, where) from None
        return self._json(resp, where)

    @classmethod
    def _json(cls, resp: httpx.Response, where: str) -> dict[str, Any]:
        return cls._parse(resp.status_code, resp.content, resp.headers, where)

    @staticmethod
    def _parse(status: int, content: bytes, headers: Mapping[str, str], where: str) -> dict[str, Any]:
        if status >= 400:
            raise provider_error(status, content, headers, where)
        try:
            data = orjson.loads(content)
        except orjson.JSONDecodeError:
            log.warning("%s answered HTTP %d with a body that is not JSON: %.300r", where, status, content)
            raise UpstreamFailed(f"{where} answered with a body that is not JSON") from None
        if not isinstance(data, dict):
            raise UpstreamFailed(f"{where} answered with JSON that is not an object")
        return data

    async def stream_events(
        self, url: str, body: dict[str, Any], *, headers: Mapping[str, str], seconds: float, where: str
    ) -> AsyncIterator[tuple[str, str]]:
        """POST and yield server-sent events as (event name, data). Errors before the first event raise the
        provider's error; errors after it raise `UpstreamFailed`/`UpstreamTimeout` from the middle of the stream."""
        request = self._client.build_request(
            "POST",
            url,
            content=dumps(body),
            headers={**_JSON, "accept": "text/event-stream", **headers},
            timeout=self._timeout(seconds),
        )
        try:
            resp = await self._client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise _transport_error(exc, where) from None
        try:
            if resp.status_code >= 400:
                raise provider_error(resp.status_code, await resp.aread(), resp.headers, where)
            async for sse in EventSource(resp).aiter_sse():
                yield sse.event, sse.data
        except SSEError as exc:
            raise UpstreamFailed(f"{where} did not answer with a stream of events ({exc})") from None
        except httpx.HTTPError as exc:
            raise _transport_error(exc, where) from None
        finally:
            await resp.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()
        if self._session is not None:
            await self._session.close()
