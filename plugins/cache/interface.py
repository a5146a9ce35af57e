"""The cache service's contract: `CacheService`, the one module another plugin may import (for types).

Other plugins reach it as `services.get(CACHE)` (or `services.optional(CACHE)`, as the gateway does).
"""

from __future__ import annotations

from typing import Any, Protocol

from app.plugin_kit import PluginService
from app.plugins import ServiceKey
from plugins.cache.schemas import CachedResponse, CacheStats, EntryPublic

__all__ = ["CACHE", "CacheService", "CacheStats", "CachedResponse", "EntryPublic"]


class CacheService(PluginService, Protocol):
    """What the cache plugin offers to endpoints and to other plugins, in either mode.

    Every method is scoped to `tenant_id`: another tenant's entries are invisible (a get answers NotFound).
    """

    async def get_entry(self, *, tenant_id: str, namespace: str, key: str) -> EntryPublic:
        """The live entry, or NotFound (also for an expired or cleared one)."""
        ...

    async def set_entry(
        self, *, tenant_id: str, namespace: str, key: str, value: Any, ttl_seconds: int | None = None
    ) -> EntryPublic:
        """Store a JSON value for `ttl_seconds` (default FAAS_CACHE_DEFAULT_TTL); PayloadTooLarge past the limit."""
        ...

    async def delete_entry(self, *, tenant_id: str, namespace: str, key: str) -> None:
        """Remove the entry, or NotFound when there was no live one."""
        ...

    async def clear_namespace(self, *, tenant_id: str, namespace: str) -> None:
        """Drop every entry of the namespace at once."""
        ...

    async def stats(self, *, tenant_id: str) -> CacheStats:
        """The tenant's hit and miss counts by kind (kv, llm, semantic)."""
        ...

    async def lookup_response(
        self, *, tenant_id: str, request: dict[str, Any], semantic: bool = False, threshold: float | None = None
    ) -> CachedResponse | None:
        """A cached response for this OpenAI-style chat request, or None.

        Exact first (same canonical request). With `semantic`, a single-turn request (one user message, at most
        one system message before it) may then match a cached one by meaning: same tenant, model, system prompt
        and parameters, cosine similarity >= `threshold` (default FAAS_CACHE_SEMANTIC_THRESHOLD, 0.95). A semantic
        lookup embeds the prompt through the gateway, an optional dependency (Unavailable when it is not open here).
        """
        ...

    async def store_response(
        self,
        *,
        tenant_id: str,
        request: dict[str, Any],
        response: dict[str, Any],
        ttl_seconds: int,
        semantic: bool | None = None,
    ) -> None:
        """Cache `response` for `request` for `ttl_seconds`.

        A single-turn request is also indexed for semantic lookups when `semantic` is True, or when it is None
        (the default) and this deployment made a semantic lookup for the same request in the last 5 minutes
        (that lookup's embedding is reused, so the usual lookup-miss-store sequence embeds once).
        """
        ...


CACHE: ServiceKey[CacheService] = ServiceKey("cache")
