"""The cache service interface and its direct (in-process) implementation.

Key/value entries and exact LLM responses live in the configured backend (PostgreSQL or Redis); semantic
vectors always live in PostgreSQL (pgvector). Embeddings come from the gateway, looked up in the registry at
call time (the gateway itself depends on this plugin, so it may open after it, or run remote).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, Protocol

from app.errors import NotFound, PayloadTooLarge, Unavailable, UpstreamFailed
from app.plugin_kit import LocalDescription, PluginInfo
from app.plugins import PluginContext
from plugins.cache import codec, llm
from plugins.cache.backends import CacheBackend, PostgresCacheBackend, RedisCacheBackend
from plugins.cache.config import CacheConfig
from plugins.cache.counters import CacheCounters
from plugins.cache.schemas import (
    CachedResponse,
    CacheStats,
    EntryPath,
    EntryPublic,
    HitMiss,
    NamespacePath,
    parse_path,
)
from plugins.cache.store import EMBEDDING_DIM, CacheStore

log = logging.getLogger("faas.cache")
LLM_NAMESPACE = "-llm"  # user namespaces cannot start with '-', so this one is private
SWEEP_SECONDS = 300.0
EMBEDDING_MEMO_SECONDS = 300.0
EMBEDDING_MEMO_SIZE = 1024


class CacheService(Protocol):
    """What the cache plugin offers to endpoints and to other plugins, in either mode.

    Every method is scoped to `tenant_id`: another tenant's entries are invisible (a get answers NotFound).
    """

    async def describe(self) -> PluginInfo:
        """Name, version, mode and capabilities of the deployment that serves cache."""
        ...

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
        lookup embeds the prompt through the gateway (Unavailable when no gateway with `embed_texts` is reachable).
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


class DirectCacheService:
    def __init__(self, ctx: PluginContext, backend: CacheBackend, config: CacheConfig) -> None:
        self._ctx = ctx
        self.backend = backend
        self.config = config
        self.store = CacheStore(ctx.db)
        self.counters = CacheCounters(backend, ctx.metrics.registry)
        caps = ("kv", "llm-exact", "llm-semantic", f"backend:{backend.name}")
        self._description = LocalDescription("cache", (), caps)
        # (tenant, exact key) -> (monotonic time, embedding) of recent semantic misses, for store_response.
        # Bounded and short-lived; never a source of truth (a lost entry only costs one more embedding call).
        self._memo: OrderedDict[tuple[str, str], tuple[float, list[float]]] = OrderedDict()

    async def describe(self) -> PluginInfo:
        return await self._description.describe()

    # -- key/value --------------------------------------------------------------------------------------------

    async def get_entry(self, *, tenant_id: str, namespace: str, key: str) -> EntryPublic:
        parse_path(EntryPath, namespace=namespace, key=key)
        entry = await self.backend.get(tenant_id=tenant_id, namespace=namespace, key=key)
        self.counters.count(tenant_id, "kv", entry is not None)
        if entry is None:
            raise NotFound(f"no entry {key!r} in cache namespace {namespace!r}")
        return EntryPublic(namespace=namespace, key=key, value=codec.loads(entry.value), expires_at=entry.expires_at)

    async def set_entry(
        self, *, tenant_id: str, namespace: str, key: str, value: Any, ttl_seconds: int | None = None
    ) -> EntryPublic:
        parse_path(EntryPath, namespace=namespace, key=key)
        raw = codec.dumps(value)
        if len(raw) > self.config.max_value_bytes:
            raise PayloadTooLarge(
                f"the value is {len(raw)} bytes as JSON; the limit is {self.config.max_value_bytes} "
                "(FAAS_CACHE_MAX_VALUE_BYTES)"
            )
        expires_at: datetime = await self.backend.set(
            tenant_id=tenant_id,
            namespace=namespace,
            key=key,
            value=raw,
            ttl_seconds=ttl_seconds or self.config.default_ttl,
        )
        return EntryPublic(namespace=namespace, key=key, value=value, expires_at=expires_at)

    async def delete_entry(self, *, tenant_id: str, namespace: str, key: str) -> None:
        parse_path(EntryPath, namespace=namespace, key=key)
        if not await self.backend.delete(tenant_id=tenant_id, namespace=namespace, key=key):
            raise NotFound(f"no entry {key!r} in cache namespace {namespace!r}")

    async def clear_namespace(self, *, tenant_id: str, namespace: str) -> None:
        parse_path(NamespacePath, namespace=namespace)
        await self.backend.clear_namespace(tenant_id=tenant_id, namespace=namespace)

    async def stats(self, *, tenant_id: str) -> CacheStats:
        counts = await self.counters.read(tenant_id)
        return CacheStats(backend=self.backend.name, **{k: HitMiss(**v) for k, v in counts.items()})

    # -- LLM responses ----------------------------------------------------------------------------------------

    async def lookup_response(
        self, *, tenant_id: str, request: dict[str, Any], semantic: bool = False, threshold: float | None = None
    ) -> CachedResponse | None:
        exact_key = llm.request_key(request)
        entry = await self.backend.get(tenant_id=tenant_id, namespace=LLM_NAMESPACE, key=exact_key)
        self.counters.count(tenant_id, "llm", entry is not None)
        if entry is not None:
            return CachedResponse(response=codec.loads(entry.value), similarity=None)
        if not semantic:
            return None
        turn = llm.single_turn(request)
        if turn is None:
            return None
        embedding = await self._embed(tenant_id, turn.user_text)
        self._remember(tenant_id, exact_key, embedding)
        candidates = await self.store.list_nearest(
            tenant_id=tenant_id,
            match_key=turn.match_key,
            embedding=embedding,
            threshold=self.config.semantic_threshold if threshold is None else threshold,
        )
        best = next((c for c in candidates if llm.compatible(c.prompt, turn.user_text)), None)
        self.counters.count(tenant_id, "semantic", best is not None)
        if best is None:
            return None
        return CachedResponse(response=codec.loads(best.response), similarity=round(best.similarity, 6))

    async def store_response(
        self,
        *,
        tenant_id: str,
        request: dict[str, Any],
        response: dict[str, Any],
        ttl_seconds: int,
        semantic: bool | None = None,
    ) -> None:
        exact_key = llm.request_key(request)
        raw = codec.dumps(response)
        await self.backend.set(
            tenant_id=tenant_id, namespace=LLM_NAMESPACE, key=exact_key, value=raw, ttl_seconds=ttl_seconds
        )
        if semantic is False:
            return
        turn = llm.single_turn(request)
        if turn is None:
            return
        embedding = self._recall(tenant_id, exact_key)
        if embedding is None:
            if semantic is None:
                return
            embedding = await self._embed(tenant_id, turn.user_text)
        await self.store.insert_semantic(
            tenant_id=tenant_id,
            exact_key=exact_key,
            match_key=turn.match_key,
            model=turn.model,
            prompt=turn.user_text,
            embedding=embedding,
            response=raw,
            ttl_seconds=ttl_seconds,
        )

    async def _embed(self, tenant_id: str, text: str) -> list[float]:
        gateway = self._ctx.services.get("gateway")
        embed = getattr(gateway, "embed_texts", None)
        if embed is None:
            raise Unavailable(
                "the semantic cache needs the gateway's embeddings: mount the gateway plugin (FAAS_PLUGINS) "
                "or run it remote (FAAS_GATEWAY_MODE=remote, FAAS_GATEWAY_URL)"
            )
        vectors = await embed(tenant_id=tenant_id, texts=[text])
        if len(vectors) != 1 or len(vectors[0]) != EMBEDDING_DIM:
            dims = [len(v) for v in vectors]
            raise UpstreamFailed(
                f"the gateway's embedding model returned vectors of {dims} dimensions; the semantic cache "
                f"stores {EMBEDDING_DIM} (all-MiniLM-L6-v2)"
            )
        return [float(x) for x in vectors[0]]

    def _remember(self, tenant_id: str, exact_key: str, embedding: list[float]) -> None:
        self._memo[(tenant_id, exact_key)] = (time.monotonic(), embedding)
        self._memo.move_to_end((tenant_id, exact_key))
        while len(self._memo) > EMBEDDING_MEMO_SIZE:
            self._memo.popitem(last=False)

    def _recall(self, tenant_id: str, exact_key: str) -> list[float] | None:
        found = self._memo.pop((tenant_id, exact_key), None)
        if found is None or time.monotonic() - found[0] > EMBEDDING_MEMO_SECONDS:
            return None
        return found[1]

    async def sweep(self) -> int:
        return await self.backend.sweep() + await self.store.sweep_semantic()


def open_backend(ctx: PluginContext, config: CacheConfig) -> CacheBackend:
    if config.backend == "redis":
        assert config.redis_url is not None  # CacheConfig refuses redis without REDIS_URL
        return RedisCacheBackend(config.redis_url, prefix=config.redis_prefix)
    return PostgresCacheBackend(ctx.db)


async def _sweep_forever(service: DirectCacheService) -> None:
    while True:
        await asyncio.sleep(SWEEP_SECONDS)
        try:
            await service.sweep()
        except Exception:
            log.warning("cache sweep failed; retrying later", exc_info=True)


@asynccontextmanager
async def open_direct(ctx: PluginContext) -> AsyncIterator[DirectCacheService]:
    """The direct service with its backend, counter flusher and sweeper, closed in reverse on shutdown."""
    config = CacheConfig.from_settings(ctx.settings)
    backend = open_backend(ctx, config)
    service = DirectCacheService(ctx, backend, config)
    service.counters.start()
    sweeper = asyncio.create_task(_sweep_forever(service), name="cache-sweep")
    try:
        yield service
    finally:
        sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweeper
        await service.counters.stop()
        await backend.aclose()
