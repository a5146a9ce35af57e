"""Hit and miss counters: per tenant in the backend (read by `GET /api/v1/cache/-/stats`), and in Prometheus.

A lookup only buffers one (tenant, counter) item; the shared background flusher (`app.batching.Batcher`, in its
fire-and-forget mode) adds the buffered counts to the backend every second, and `read()` flushes first, so a
replica always reads its own counts exactly and other replicas' within a second. A crash loses at most that
second of statistics, never cached data. A tenant whose write fails keeps its counts for a later flush (the
buffer is bounded: past it the oldest counts are dropped and logged) and never fails another tenant's flush or
anyone's `read()`.

The Prometheus counter is labelled by backend, kind and result, not by tenant: tenants are unbounded and each
label value is a time series kept forever by the scraper. Per-tenant numbers come from the API instead.
"""

from __future__ import annotations

import logging
from collections import Counter as Tally

from prometheus_client import CollectorRegistry, Counter

from app.batching import Batcher
from plugins.cache.backends import CacheBackend

log = logging.getLogger("faas.cache")
KINDS = ("kv", "llm", "semantic")

Count = tuple[str, str]  # (tenant id, counter name such as "kv.hits"): one lookup


class CacheCounters:
    def __init__(
        self, backend: CacheBackend, registry: CollectorRegistry, *, interval: float = 1.0, max_pending: int = 100_000
    ) -> None:
        self.backend = backend
        self.interval = interval
        self.batcher: Batcher[Count] = Batcher(
            self._write, name="cache-counters", interval=interval, max_batch=max_pending, max_pending=max_pending
        )
        self._lookups = Counter(
            "faas_cache_lookups",
            "Cache lookups, by backend, kind (kv, llm, semantic) and result (hit, miss)",
            ["plugin", "backend", "kind", "result"],
            registry=registry,
        )

    def count(self, tenant_id: str, kind: str, hit: bool) -> None:
        self.batcher.add((tenant_id, f"{kind}.{'hits' if hit else 'misses'}"))
        self._lookups.labels("cache", self.backend.name, kind, "hit" if hit else "miss").inc()

    async def _write(self, batch: list[Count]) -> list[Count]:
        """One write per tenant; the counts of a tenant whose write fails are returned, to be retried."""
        by_tenant: dict[str, list[Count]] = {}
        for item in batch:
            by_tenant.setdefault(item[0], []).append(item)
        failed: list[Count] = []
        for tenant_id, items in by_tenant.items():
            try:
                await self.backend.incr_counters(tenant_id=tenant_id, counts=Tally(name for _, name in items))
            except Exception:
                # Not another tenant's problem: theirs are written, this one's wait for the next flush.
                log.warning("cache counters of tenant %s not flushed; retrying", tenant_id, exc_info=True)
                failed.extend(items)
        return failed

    async def flush(self) -> None:
        """Add the buffered counts to the backend (after a flush in flight). Never raises; completes even when the
        caller is cancelled, so counts taken from the buffer reach the backend or go back."""
        await self.batcher.flush()

    async def read(self, tenant_id: str) -> dict[str, dict[str, int]]:
        await self.flush()
        raw = await self.backend.get_counters(tenant_id=tenant_id)
        return {kind: {f: raw.get(f"{kind}.{f}", 0) for f in ("hits", "misses")} for kind in KINDS}

    def start(self) -> None:
        self.batcher.start()

    async def stop(self) -> None:
        await self.batcher.stop()
