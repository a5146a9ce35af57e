"""`CacheService` over HTTP: the same routes and schemas, served by the deployment at FAAS_CACHE_URL."""

from __future__ import annotations

from typing import Any

from app.remote import RemoteService, remote_factory
from app.routing import parse_path
from plugins.cache.schemas import (
    CachedResponse,
    CacheStats,
    EntryPath,
    EntryPublic,
    EntryPut,
    NamespacePath,
    ResponseLookup,
    ResponseLookupResult,
    ResponseStore,
)


class RemoteCacheService(RemoteService):
    """Namespaces and keys are checked before a path is built from them: the HTTP client would resolve a key of
    dots away (see schemas), and a remote caller gets the same 422 a direct one does."""

    async def get_entry(self, *, tenant_id: str, namespace: str, key: str) -> EntryPublic:
        parse_path(EntryPath, {"namespace": namespace, "key": key})
        return await self._client.call("GET", f"/{namespace}/{key}", EntryPublic, tenant_id=tenant_id)

    async def set_entry(
        self, *, tenant_id: str, namespace: str, key: str, value: Any, ttl_seconds: int | None = None
    ) -> EntryPublic:
        parse_path(EntryPath, {"namespace": namespace, "key": key})
        body = EntryPut(value=value, ttl_seconds=ttl_seconds).model_dump(mode="json", exclude_none=True)
        body.setdefault("value", None)
        return await self._client.call("PUT", f"/{namespace}/{key}", EntryPublic, tenant_id=tenant_id, body=body)

    async def delete_entry(self, *, tenant_id: str, namespace: str, key: str) -> None:
        parse_path(EntryPath, {"namespace": namespace, "key": key})
        await self._client.send("DELETE", f"/{namespace}/{key}", tenant_id=tenant_id)

    async def clear_namespace(self, *, tenant_id: str, namespace: str) -> None:
        parse_path(NamespacePath, {"namespace": namespace})
        await self._client.send("DELETE", f"/{namespace}", tenant_id=tenant_id)

    async def stats(self, *, tenant_id: str) -> CacheStats:
        return await self._client.call("GET", "/-/stats", CacheStats, tenant_id=tenant_id)

    async def lookup_response(
        self, *, tenant_id: str, request: dict[str, Any], semantic: bool = False, threshold: float | None = None
    ) -> CachedResponse | None:
        body = ResponseLookup(request=request, semantic=semantic, threshold=threshold)
        found = await self._client.call(
            "POST", "/-/responses/lookup", ResponseLookupResult, tenant_id=tenant_id, body=body
        )
        if not found.hit or found.response is None:
            return None
        return CachedResponse(response=found.response, similarity=found.similarity)

    async def store_response(
        self,
        *,
        tenant_id: str,
        request: dict[str, Any],
        response: dict[str, Any],
        ttl_seconds: int,
        semantic: bool | None = None,
    ) -> None:
        body = ResponseStore(request=request, response=response, ttl_seconds=ttl_seconds, semantic=semantic)
        await self._client.send("POST", "/-/responses", tenant_id=tenant_id, body=body)


open_remote = remote_factory(RemoteCacheService)
