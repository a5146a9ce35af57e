"""The pooled transport under `ServiceHTTPClient`: httpx's API over aiohttp (httpx-aiohttp), with its errors fixed.

aiohttp's client is several times faster than httpx's own transport on this workload (see FACTS.md), but
httpx-aiohttp 0.2 maps errors wrongly for a retrying client: a refused connection and a server that hung up
after reading the request both surface as `httpx.ConnectTimeout`. The second case may already have run a POST,
so treating it as "never sent" would send the POST twice. `_FixedAiohttpTransport` re-maps from the aiohttp
cause: only a failure to connect is a connect error; a hang-up or reset is a read/protocol error. It also turns
off aiohttp's hidden one-time re-send of idempotent requests, so the upstream sees exactly the tries we count.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport


def _remap(exc: httpx.TransportError) -> httpx.TransportError:
    cause = exc.__cause__
    if cause is None:
        return exc
    message = f"{type(cause).__name__}: {cause}"
    new: httpx.TransportError
    if isinstance(cause, aiohttp.ConnectionTimeoutError):
        new = httpx.ConnectTimeout(message)
    elif isinstance(cause, aiohttp.ClientConnectorError):
        new = httpx.ConnectError(message)
    elif isinstance(cause, aiohttp.ServerTimeoutError):
        new = httpx.ReadTimeout(message)
    elif isinstance(cause, aiohttp.ServerDisconnectedError):
        new = httpx.RemoteProtocolError(message)
    elif isinstance(cause, aiohttp.ClientOSError | aiohttp.ClientPayloadError):
        new = httpx.ReadError(message)
    else:
        return exc
    new.__cause__ = cause
    return new


class _FixedStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream) -> None:
        self._inner = inner

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._inner:
                yield chunk
        except httpx.TransportError as exc:
            raise _remap(exc) from exc.__cause__

    async def aclose(self) -> None:
        await self._inner.aclose()


# aiohttp warns (ResourceWarning) for a bytes body over 1 MB; an iterable body of the same bytes, with its
# Content-Length kept (so it is not chunked), is written piece by piece without the warning.
_LARGE_BODY = 2**20
_PIECE = 2**16


class _Pieces(httpx.AsyncByteStream):
    def __init__(self, body: bytes) -> None:
        self._body = body

    async def __aiter__(self) -> AsyncIterator[bytes]:
        view = memoryview(self._body)
        for start in range(0, len(view), _PIECE):
            yield bytes(view[start : start + _PIECE])


def _in_pieces(request: httpx.Request) -> httpx.Request:
    try:
        body = request.content
    except httpx.RequestNotRead:
        return request
    if len(body) <= _LARGE_BODY:
        return request
    return httpx.Request(
        request.method, request.url, headers=request.headers, stream=_Pieces(body), extensions=request.extensions
    )


class _FixedAiohttpTransport(AiohttpTransport):
    def get_client(self) -> aiohttp.ClientSession:
        session: aiohttp.ClientSession = super().get_client()
        # aiohttp re-sends an idempotent request once, silently, when the server hangs up; retries are the
        # service client's decision (budget, breaker, metrics), so the transport must send each try once.
        session._retry_connection = False
        return session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request = _in_pieces(request)
        try:
            response: httpx.Response = await super().handle_async_request(request)
        except httpx.TransportError as exc:
            raise _remap(exc) from exc.__cause__
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _FixedStream(response.stream)
        return response


def pooled_transport(max_connections: int = 100) -> httpx.AsyncBaseTransport:
    return _FixedAiohttpTransport(
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    )
