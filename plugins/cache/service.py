"""The direct (in-process) cache service, opened by `open_direct(ctx)` with its backend, counters and sweeper.

Key/value entries and exact LLM responses live in the configured backend (PostgreSQL or Redis); semantic
vectors always live in PostgreSQL (pgvector). Embeddings come from the gateway, an optional dependency (`uses`)
looked up in the registry at call time: the gateway uses this plugin too, so neither may wait for the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cachetools import TTLCache

from app import codec
from app.db import Database
from app.errors import NotFound, PayloadTooLarge, Unavailable, UpstreamFailed
from app.plugin_kit import LocalDescription, PluginInfo, Readiness
from app.plugins import PluginContext, Services
from app.routing import parse_path
from plugins.cache import llm
from plugins.cache.backends import CacheBackend, PostgresCacheBackend, RedisCacheBackend
from plugins.cache.config import CacheConfig
from plugins.cache.counters import CacheCounters
from plugins.cache.schemas import CachedResponse, CacheStats, EntryPath, EntryPublic, HitMiss, NamespacePath
from plugins.cache.store import EMBEDDING_DIM, CacheStore
from plugins.gateway.interface import GATEWAY

log = logging.getLogger("faas.cache")
LLM_NAMESPACE = "-llm"  # user namespaces cannot start with '-', so this one is private
SWEEP_SECONDS = 300.0
# The sweep deletes in statements of SWEEP_BATCH rows (each its own short transaction: row locks held for one
# batch, and replicas sweeping together skip each other's rows), batch after batch until fewer than a batch are
# left. A tick stops after SWEEP_MAX_BATCHES per table; a tick that stopped there runs again after
# SWEEP_BACKLOG_SECONDS, not SWEEP_SECONDS, so the sweep keeps up with any expiry rate the database can delete at.
SWEEP_BATCH = 5000
SWEEP_MAX_BATCHES = 100
SWEEP_BACKLOG_SECONDS = 1.0
EMBEDDING_MEMO_SECONDS = 300.0
EMBEDDING_MEMO_SIZE = 1024


@dataclass(frozen=True)
class Swept:
    deleted: int
    more: bool  # stopped at the per-tick bound with expired rows left


class DirectCacheService:
    def __init__(
        self,
        *,
        db: Database,
        services: Services,
        backend: CacheBackend,
        counters: CacheCounters,
        config: CacheConfig,
        about: LocalDescription,
    ) -> None:
        self._services = services
        self.backend = backend
        self.config = config
        self.store = CacheStore(db)
        self.counters = counters
        self._about = about
        # (tenant, exact key) -> embedding of recent semantic misses, for store_response. Bounded and short-lived;
        # never a source of truth (a lost entry only costs one more embedding call).
        self._memo: TTLCache[tuple[str, str], list[float]] = TTLCache(EMBEDDING_MEMO_SIZE, EMBEDDING_MEMO_SECONDS)

    async def describe(self) -> PluginInfo:
        return self._about.info()

    async def ready(self) -> Readiness:
        return await self.backend.ready()

    # -- key/value --------------------------------------------------------------------------------------------

    async def get_entry(self, *, tenant_id: str, namespace: str, key: str) -> EntryPublic:
        parse_path(EntryPath, {"namespace": namespace, "key": key})
        entry = await self.backend.get(tenant_id=tenant_id, namespace=namespace, key=key)
        self.counters.count(tenant_id, "kv", entry is not None)
        if entry is None:
            raise NotFound(f"no entry {key!r} in cache namespace {namespace!r}")
        return EntryPublic(namespace=namespace, key=key, value=codec.loads(entry.value), expires_at=entry.expires_at)

    async def set_entry(
        self, *, tenant_id: str, namespace: str, key: str, value: Any, ttl_seconds: int | None = None
    ) -> EntryPublic:
        parse_path(EntryPath, {"namespace": namespace, "key": key})
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
        parse_path(EntryPath, {"namespace": namespace, "key": key})
        if not await self.backend.delete(tenant_id=tenant_id, namespace=namespace, key=key):
            raise NotFound(f"no entry {key!r} in cache namespace {namespace!r}")

    async def clear_namespace(self, *, tenant_id: str, namespace: str) -> None:
        parse_path(NamespacePath, {"namespace": namespace})
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
        gateway = self._services.optional(GATEWAY)
        if gateway is None:
            raise Unavailable(
                "the semantic cache needs the gateway's embeddings: mount the gateway plugin (FAAS_PLUGINS) "
                "or run it remote (FAAS_GATEWAY_MODE=remote, FAAS_GATEWAY_URL)"
            )
        vectors = await gateway.embed_texts(tenant_id=tenant_id, texts=[text])
        if len(vectors) != 1 or len(vectors[0]) != EMBEDDING_DIM:
            dims = [len(v) for v in vectors]
            raise UpstreamFailed(
                f"the gateway's embedding model returned vectors of {dims} dimensions; the semantic cache "
                f"stores {EMBEDDING_DIM} (all-MiniLM-L6-v2)"
            )
        return [float(x) for x in vectors[0]]

    def _remember(self, tenant_id: str, exact_key: str, embedding: list[float]) -> None:
        self._memo[(tenant_id, exact_key)] = embedding

    def _recall(self, tenant_id: str, exact_key: str) -> list[float] | None:
        return self._memo.pop((tenant_id, exact_key), None)

    async def sweep(self, *, batch: int = SWEEP_BATCH, max_batches: int = SWEEP_MAX_BATCHES) -> Swept:
        """Delete expired (and cleared) entries and semantic rows, `batch` rows a statement, until fewer than
        `batch` are left or `max_batches` ran for a table (then `more` is set: call again soon)."""
        deleted, more = 0, False
        for sweep_some in (self.backend.sweep, self.store.sweep_semantic):
            for _ in range(max_batches):
                n = await sweep_some(batch=batch)
                deleted += n
                if n < batch:
                    break
            else:
                more = True
        return Swept(deleted, more)


def open_backend(db: Database, config: CacheConfig, redis_url: str | None) -> CacheBackend:
    if config.backend_for(redis_url) == "redis":
        assert redis_url is not None  # CacheConfig.load refuses redis without REDIS_URL
        return RedisCacheBackend(redis_url, prefix=config.redis_prefix)
    return PostgresCacheBackend(db)


async def _sweep_forever(service: DirectCacheService) -> None:
    wait = SWEEP_SECONDS
    while True:
        await asyncio.sleep(wait)
        wait = SWEEP_SECONDS
        try:
            swept = await service.sweep()
        except Exception:
            log.warning("cache sweep failed; retrying later", exc_info=True)
            continue
        if swept.more:
            log.info("cache sweep has a backlog; continuing shortly", extra={"deleted": swept.deleted})
            wait = SWEEP_BACKLOG_SECONDS


@asynccontextmanager
async def open_direct(ctx: PluginContext) -> AsyncIterator[DirectCacheService]:
    """The direct service with its backend, counter flusher and sweeper, closed in reverse on shutdown."""
    config = CacheConfig.load(ctx.settings)
    backend = open_backend(ctx.db, config, ctx.settings.redis_url)
    caps = ("kv", "llm-exact", "llm-semantic", f"backend:{backend.name}")
    service = DirectCacheService(
        db=ctx.db,
        services=ctx.services,
        backend=backend,
        counters=CacheCounters(backend, ctx.metrics.registry),
        config=config,
        about=LocalDescription(ctx, caps),
    )
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
