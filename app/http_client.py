"""Service-to-service HTTP: `ServiceHTTPClient` (one pooled client per upstream) and `ServiceClientManager`.

Foundation version: pooled clients per upstream, opened lazily and closed by the lifespan. Retries, breaker,
deadlines and signing are added by the service-client work.
"""

from __future__ import annotations

from typing import Any

import httpx

from app.settings import Settings


class ServiceHTTPClient:
    def __init__(self, name: str, base_url: str) -> None:
        self.name = name
        self.base_url = base_url
        self._client = httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(30.0, connect=5.0))

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

    async def aclose(self) -> None:
        await self._client.aclose()


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
