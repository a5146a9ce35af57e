"""The shared half of every `Remote<Name>Service`: call a route of the deployment that serves the plugin.

A remote service talks to the same routes (`/api/v1/<name>/...`) that its api.py mounts, with the schemas from
its schemas.py, so the two modes share one contract. `call` returns the parsed response model or raises the very
`ServiceError` the serving deployment raised (problem JSON crosses the wire and comes back as the same class);
`stream` passes a streaming body through chunk by chunk. The tenant of the current request rides along in the
signed headers, so the serving deployment acts for the same tenant.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, ClassVar, TypeVar

import httpx
from pydantic import BaseModel

from app import context
from app.http_client import ServiceHTTPClient, raise_for_problem
from app.plugin_kit import PluginInfo
from app.plugins import PluginContext

M = TypeVar("M", bound=BaseModel)


def _params(params: BaseModel | dict[str, Any] | None) -> dict[str, Any] | None:
    if isinstance(params, BaseModel):
        return params.model_dump(mode="json", exclude_none=True)
    return params


class RemoteService:
    """Base class: `describe()` and `ready()` for free, `call`/`call_json`/`stream` for the plugin's own methods."""

    # Client tuning this plugin's calls need by default (FAAS_<NAME>_CLIENT_* and FAAS_CLIENT_* still win).
    client_defaults: ClassVar[Mapping[str, float]] = {}

    def __init__(self, ctx: PluginContext) -> None:
        self.name = ctx.config.name
        self.client: ServiceHTTPClient = ctx.clients.get_client(self.name, defaults=self.client_defaults)
        self.prefix = f"/api/v1/{self.name}"

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = self.client.get_headers(tenant_id=context.current_tenant_id())
        if extra:
            headers.update(extra)
        return headers

    async def send(
        self,
        method: str,
        path: str,
        *,
        body: BaseModel | dict[str, Any] | list[Any] | None = None,
        params: BaseModel | dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """The raw response of a call to `<prefix><path>`, after raising any problem it carries."""
        response = await self.client.request(
            method, self.prefix + path, json_data=body, params=_params(params), headers=self.headers(headers)
        )
        return raise_for_problem(response)

    async def call(
        self,
        method: str,
        path: str,
        response: type[M],
        *,
        body: BaseModel | dict[str, Any] | list[Any] | None = None,
        params: BaseModel | dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> M:
        answer = await self.send(method, path, body=body, params=params, headers=headers)
        return response.model_validate_json(answer.content)

    async def call_json(self, method: str, path: str, **kw: Any) -> Any:
        answer = await self.send(method, path, **kw)
        return answer.json() if answer.content else None

    async def stream(
        self,
        method: str,
        path: str,
        *,
        body: BaseModel | dict[str, Any] | None = None,
        params: BaseModel | dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        deadline: float | None = None,
    ) -> AsyncIterator[bytes]:
        async for chunk in self.client.stream(
            method,
            self.prefix + path,
            json_data=body,
            params=_params(params),
            headers=self.headers(headers),
            deadline=deadline,
        ):
            yield chunk

    async def describe(self) -> PluginInfo:
        return await self.call("GET", "/-/info", PluginInfo)

    async def ready(self) -> dict[str, Any]:
        """For /health/ready: is the serving deployment reachable, and what is the breaker doing."""
        return await self.client.probe()


def remote_factory(cls: type[RemoteService]) -> Any:
    """A service factory for a remote service; the client it uses is closed by the lifespan's client manager."""

    @asynccontextmanager
    async def factory(ctx: PluginContext) -> AsyncIterator[RemoteService]:
        yield cls(ctx)

    return factory
