"""The remote half of every plugin: `PluginClient` calls a plugin's routes on the deployment that serves it.

A `Remote<Name>Service` holds a `PluginClient` (composition, so its own method names are only the interface's;
`RemoteService` gives it `describe` and `ready`) and implements each interface method as one call to the same
route its api.py mounts, with the schemas from its schemas.py; the two modes therefore share one contract. `call`
returns the parsed response model or raises the very `ServiceError` the serving deployment raised (problem JSON
crosses the wire and comes back as the same class); `stream` passes a streaming body through chunk by chunk. Each
call names its tenant, which travels in the signed `X-Tenant-ID` header, so the serving deployment acts for it.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from app import context
from app.http_client import ServiceHTTPClient, raise_for_problem, without_credentials
from app.plugin_kit import Hop, PluginInfo, Readiness
from app.plugins import Factory, PluginContext

M = TypeVar("M", bound=BaseModel)
S = TypeVar("S")
Body = BaseModel | dict[str, Any] | list[Any] | bytes | None  # bytes: encoded by the caller (headers name it)
Params = BaseModel | dict[str, Any] | None


def _params(params: Params) -> dict[str, Any] | None:
    if isinstance(params, BaseModel):
        return params.model_dump(mode="json", exclude_none=True)
    return params


class PluginClient:
    """Calls to `/api/v1/<name>/...` (or, with `root=True`, to absolute paths) of the deployment at
    FAAS_<NAME>_URL, through that upstream's `ServiceHTTPClient` (retries, deadline, breaker, signing)."""

    def __init__(self, ctx: PluginContext, *, defaults: Mapping[str, float] | None = None) -> None:
        self.name = ctx.plugin.name
        self.http: ServiceHTTPClient = ctx.clients.get_client(self.name, defaults=defaults)
        self.prefix = f"/api/v1/{self.name}"

    def _headers(self, tenant_id: str | None, extra: Mapping[str, str] | None) -> dict[str, str]:
        # A call that names no tenant (describe) acts for the tenant of the request being served.
        headers = self.http.get_headers(tenant_id=tenant_id or context.current_tenant_id())
        if extra:
            headers.update(extra)
        return headers

    def _path(self, path: str, root: bool) -> str:
        return path if root else self.prefix + path

    async def send(
        self,
        method: str,
        path: str,
        *,
        tenant_id: str | None = None,
        body: Body = None,
        params: Params = None,
        headers: Mapping[str, str] | None = None,
        root: bool = False,
    ) -> httpx.Response:
        """The raw response of one call, after raising any problem it carries."""
        response = await self.http.request(
            method,
            self._path(path, root),
            json_data=body,
            params=_params(params),
            headers=self._headers(tenant_id, headers),
        )
        return raise_for_problem(response)

    async def call(
        self,
        method: str,
        path: str,
        response: type[M],
        *,
        tenant_id: str | None = None,
        body: Body = None,
        params: Params = None,
        headers: Mapping[str, str] | None = None,
        root: bool = False,
    ) -> M:
        """One call whose answer is a `response` model."""
        answer = await self.send(
            method, path, tenant_id=tenant_id, body=body, params=params, headers=headers, root=root
        )
        return response.model_validate_json(answer.content)

    def stream(
        self,
        method: str,
        path: str,
        *,
        tenant_id: str | None = None,
        body: Body = None,
        params: Params = None,
        headers: Mapping[str, str] | None = None,
        root: bool = False,
    ) -> AsyncGenerator[bytes, None]:
        """The response body chunk by chunk; a problem status raises before the first chunk."""
        return self.http.stream(
            method,
            self._path(path, root),
            json_data=body,
            params=_params(params),
            headers=self._headers(tenant_id, headers),
        )

    async def describe(self) -> PluginInfo:
        """The serving deployment's description, with this deployment's view of the hop put first in `via`."""
        info = await self.call("GET", "/-/info", PluginInfo)
        hop = Hop(mode="remote", url=without_credentials(self.http.base_url), breaker=self.http.breaker.state)
        return info.model_copy(update={"via": [hop, *info.via]})

    async def ready(self) -> Readiness:
        """For /health/ready: is the serving deployment reachable, and what is the breaker doing."""
        return await self.http.probe()


class RemoteService:
    """What every `Remote<Name>Service` starts from: its client, and the two methods every interface has
    (`describe` over the plugin's `/-/info` route, `ready` as the probe of the serving deployment). The rest of the
    class is one short method per interface method; helpers stay on the client, out of the interface's namespace."""

    def __init__(self, client: PluginClient) -> None:
        self._client = client

    async def describe(self) -> PluginInfo:
        return await self._client.describe()

    async def ready(self) -> Readiness:
        return await self._client.ready()


def remote_factory(build: Callable[[PluginClient], S], *, defaults: Mapping[str, float] | None = None) -> Factory[S]:
    """The factory of a remote service: `build(PluginClient)`; its HTTP client closes with the client manager.

    `defaults` are the client tuning this plugin's calls need (FAAS_<NAME>_CLIENT_* and FAAS_CLIENT_* still win).
    """

    @asynccontextmanager
    async def open_remote(ctx: PluginContext) -> AsyncIterator[S]:
        yield build(PluginClient(ctx, defaults=defaults))

    return open_remote
