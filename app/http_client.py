"""Service-to-service HTTP: `ServiceHTTPClient` (one pooled client per upstream) and `ServiceClientManager`.

Foundation version: the documented API (`get/post/put/patch/delete(path, json_data=, params=, headers=)`,
`get_headers(tenant_id=)`, `raise_for_problem`), pooled clients per upstream opened lazily and closed by the
lifespan. Retries, breaker, deadlines and signing are added by the service-client work behind this same API.
"""

from __future__ import annotations

from typing import Any

import httpx

from app import context
from app.errors import error_from_problem
from app.settings import Settings


class ServiceHTTPClient:
    def __init__(self, name: str, base_url: str, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.name = name
        self.base_url = base_url
        self._client = httpx.AsyncClient(
            base_url=base_url, timeout=httpx.Timeout(30.0, connect=5.0), transport=transport
        )

    def get_headers(self, tenant_id: str | None = None) -> dict[str, str]:
        headers: dict[str, str] = {}
        rid = context.current_request_id()
        if rid:
            headers["X-Request-ID"] = rid
        tp = context.current_traceparent()
        if tp:
            headers["traceparent"] = tp
        if tenant_id:
            headers["X-Tenant-ID"] = tenant_id
        return headers

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_data: Any = None,
        params: Any = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        return await self._client.request(method, path, json=json_data, params=params, headers=headers)

    async def get(self, path: str, **kw: Any) -> httpx.Response:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, **kw: Any) -> httpx.Response:
        return await self.request("POST", path, **kw)

    async def put(self, path: str, **kw: Any) -> httpx.Response:
        return await self.request("PUT", path, **kw)

    async def patch(self, path: str, **kw: Any) -> httpx.Response:
        return await self.request("PATCH", path, **kw)

    async def delete(self, path: str, **kw: Any) -> httpx.Response:
        return await self.request("DELETE", path, **kw)

    async def aclose(self) -> None:
        await self._client.aclose()


def raise_for_problem(response: httpx.Response) -> httpx.Response:
    """Raise the `ServiceError` a problem response stands for (the same class the remote side raised)."""
    if response.status_code < 400:
        return response
    try:
        body = response.json()
    except ValueError:
        body = {"detail": response.text[:500] or response.reason_phrase}
    raise error_from_problem(response.status_code, body, dict(response.headers))


class ServiceClientManager:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._clients: dict[str, ServiceHTTPClient] = {}

    def get_client(self, name: str) -> ServiceHTTPClient:
        client = self._clients.get(name)
        if client is None:
            url = self.settings.plugin(name).url
            if not url:
                raise KeyError(f"no URL for service {name!r}: set FAAS_{name.upper()}_URL")
            client = self._clients[name] = ServiceHTTPClient(name, url)
        return client

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()
