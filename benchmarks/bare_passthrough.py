"""The floor a Python gateway can reach: a bare Starlette pass-through on aiohttp's client, for gateway_bench.

It forwards the client's body to the upstream and the upstream's body back, with no authentication, no limits,
no validation and no accounting: whatever a real gateway does on top costs throughput against this.

Run: python benchmarks/bare_passthrough.py PORT UPSTREAM_URL  (listens on 127.0.0.1 only).
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


def build(upstream: str) -> Starlette:
    session: dict[str, aiohttp.ClientSession] = {}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        session["s"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=512))
        yield
        await session["s"].close()

    async def forward(request: Request) -> Response:
        body = await request.body()
        async with session["s"].post(upstream, data=body, headers={"content-type": "application/json"}) as r:
            data = await r.read()
            return Response(data, status_code=r.status, media_type="application/json")

    return Starlette(routes=[Route("/v1/chat/completions", forward, methods=["POST"])], lifespan=lifespan)


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(build(sys.argv[2]), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
