"""A small plugin used only by the remote-mode tests: it echoes the request context, raises errors on demand,
streams on cue and sleeps, in both a direct and a remote implementation, exactly as a built-in plugin would.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Literal, Protocol

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute

from app import context
from app.errors import (
    Conflict,
    DeploymentUnavailable,
    InvalidInput,
    NotFound,
    RateLimited,
    ServiceError,
    Unavailable,
    UpstreamFailed,
    UpstreamTimeout,
)
from app.plugin_kit import LocalDescription, PluginInfo, PluginService, Readiness, describe_route
from app.plugins import Plugin, PluginContext, ServiceKey, service
from app.remote import RemoteService, remote_factory
from app.routing import api_route, json_response, read_body, read_query
from app.schemas import Schema

ERRORS: dict[str, type[ServiceError]] = {
    "not_found": NotFound,
    "conflict": Conflict,
    "invalid": InvalidInput,
    "rate_limited": RateLimited,
    "unavailable": Unavailable,
    "upstream_failed": UpstreamFailed,
    "upstream_timeout": UpstreamTimeout,
}
Kind = Literal[
    "not_found",
    "conflict",
    "invalid",
    "rate_limited",
    "unavailable",
    "upstream_failed",
    "upstream_timeout",
    "crash",  # an unexpected exception, as a request's content may cause one: a 500 problem
    "deployment_unavailable",  # this deployment cannot serve anyone (its database is down, say)
]


class EchoOut(Schema):
    tenant_id: str
    request_id: str | None
    trace_id: str | None
    deadline_ms: int | None


class FailIn(Schema):
    kind: Kind
    detail: str


class SleepQuery(Schema):
    seconds: float


class TicksQuery(Schema):
    n: int = 3


@dataclass
class Cues:
    """Shared with the test: a gate the stream waits on, and what the sleeping handler saw."""

    gate: asyncio.Event = field(default_factory=asyncio.Event)
    sleeps_started: int = 0
    sleeps_cancelled: int = 0
    sleeps_finished: int = 0


class EchoService(PluginService, Protocol):
    async def whoami(self) -> EchoOut: ...

    async def fail(self, body: FailIn) -> None: ...

    async def sleep(self, seconds: float) -> None: ...

    def ticks(self, n: int) -> AsyncIterator[bytes]: ...


ECHO: ServiceKey[EchoService] = ServiceKey("echo")


class DirectEchoService:
    def __init__(self, cues: Cues, about: LocalDescription) -> None:
        self.cues = cues
        self._about = about

    async def describe(self) -> PluginInfo:
        return self._about.info()

    async def ready(self) -> Readiness:
        return {"ok": True}

    async def whoami(self) -> EchoOut:
        trace = context.parse_traceparent(context.current_traceparent())
        deadline = context.current_deadline()
        return EchoOut(
            tenant_id=context.current_tenant_id() or "",
            request_id=context.current_request_id(),
            trace_id=trace.trace_id if trace else None,
            deadline_ms=None if deadline is None else int((deadline - time.monotonic()) * 1000),
        )

    async def fail(self, body: FailIn) -> None:
        if body.kind == "crash":
            raise RuntimeError(body.detail)
        if body.kind == "deployment_unavailable":
            raise DeploymentUnavailable(body.detail, cause="test")
        extra = {"thing": "widget"} if body.kind == "conflict" else None
        raise ERRORS[body.kind](body.detail, extra=extra)

    async def sleep(self, seconds: float) -> None:
        self.cues.sleeps_started += 1
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            self.cues.sleeps_cancelled += 1
            raise
        self.cues.sleeps_finished += 1

    async def ticks(self, n: int) -> AsyncIterator[bytes]:
        for i in range(n):
            if i == 1:
                await self.cues.gate.wait()
            yield f"data: {i}\n\n".encode()


class RemoteEchoService(RemoteService):
    pass

    async def whoami(self) -> EchoOut:
        return await self._client.call("GET", "/whoami", EchoOut)

    async def fail(self, body: FailIn) -> None:
        await self._client.send("POST", "/fail", body=body)

    async def sleep(self, seconds: float) -> None:
        await self._client.send("POST", "/sleep", params={"seconds": seconds})

    def ticks(self, n: int) -> AsyncIterator[bytes]:
        return self._client.stream("GET", "/ticks", params={"n": n})


async def whoami(request: Request) -> Response:
    return json_response(await service(request, ECHO).whoami())


async def fail(request: Request) -> Response:
    await service(request, ECHO).fail(await read_body(request, FailIn))
    return Response(status_code=204)


async def sleep(request: Request) -> Response:
    await service(request, ECHO).sleep(read_query(request, SleepQuery).seconds)
    return Response(status_code=204)


async def ticks(request: Request) -> Response:
    n = read_query(request, TicksQuery).n
    return StreamingResponse(service(request, ECHO).ticks(n), media_type="text/event-stream")


def routes() -> list[BaseRoute]:
    return [
        describe_route(ECHO),
        api_route("GET", "/whoami", whoami, "Who am I", response=EchoOut),
        api_route("POST", "/fail", fail, "Raise an error", body=FailIn, status=204),
        api_route("POST", "/sleep", sleep, "Sleep", query=SleepQuery, status=204),
        api_route("GET", "/ticks", ticks, "Stream ticks", query=TicksQuery, content={"text/event-stream": {}}),
    ]


def echo_plugin(cues: Cues) -> Plugin[EchoService]:
    @asynccontextmanager
    async def open_direct(ctx: PluginContext) -> AsyncIterator[DirectEchoService]:
        yield DirectEchoService(cues, LocalDescription(ctx, ("echo",)))

    return Plugin(key=ECHO, direct=open_direct, remote=remote_factory(RemoteEchoService), routes=routes)
