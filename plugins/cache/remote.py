"""The cache service over HTTP: the same interface, served by the deployment at FAAS_CACHE_URL."""

from __future__ import annotations

from typing import Any

from app.remote import RemoteService
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
    parse_path,
)


class RemoteCacheService(RemoteService):
    """`CacheService` in remote mode; `describe()` and `ready()` come from `RemoteService`.

    Each call names its tenant explicitly (the signed X-Tenant-ID header), so a plugin calling on behalf of a
    tenant other than the current request's is served as that tenant.
    """

    def _as(self, tenant_id: str) -> dict[str, str]:
        return {"X-Tenant-ID": tenant_id}

    # Checked before the path is built: a key of dots would be resolved away by the HTTP client (see schemas).
    async def get_entry(self, *, tenant_id: str, namespace: str, key: str) -> EntryPublic:
        parse_path(EntryPath, namespace=namespace, key=key)
        return await self.call("GET", f"/{namespace}/{key}", EntryPublic, headers=self._as(tenant_id))

    async def set_entry(
        self, *, tenant_id: str, namespace: str, key: str, value: Any, ttl_seconds: int | None = None
    ) -> EntryPublic:
        parse_path(EntryPath, namespace=namespace, key=key)
        body = EntryPut(value=value, ttl_seconds=ttl_seconds).model_dump(mode="json", exclude_none=True)
        body.setdefault("value", None)
        return await self.call("PUT", f"/{namespace}/{key}", EntryPublic, body=body, headers=self._as(tenant_id))

    async def delete_entry(self, *, tenant_id: str, namespace: str, key: str) -> None:
        parse_path(EntryPath, namespace=namespace, key=key)
        await self.send("DELETE", f"/{namespace}/{key}", headers=self._as(tenant_id))

    async def clear_namespace(self, *, tenant_id: str, namespace: str) -> None:
        parse_path(NamespacePath, namespace=namespace)
        await self.send("DELETE", f"/{namespace}", headers=self._as(tenant_id))

    async def stats(self, *, tenant_id: str) -> CacheStats:
        return await self.call("GET", "/-/stats", CacheStats, headers=self._as(tenant_id))

    async def lookup_response(
        self, *, tenant_id: str, request: dict[str, Any], semantic: bool = False, threshold: float | None = None
    ) -> CachedResponse | None:
        body = ResponseLookup(request=request, semantic=semantic, threshold=threshold)
        found = await self.call(
            "POST", "/-/responses/lookup", ResponseLookupResult, body=body, headers=self._as(tenant_id)
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
        await self.send("POST", "/-/responses", body=body, headers=self._as(tenant_id))
