"""Hit and miss counters: per tenant in the backend (read by `GET /api/v1/cache/-/stats`), and in Prometheus.

A lookup only adds to an in-memory tally; a background task adds the tally to the backend every second, and
`stats()` flushes first, so a replica always reads its own counts exactly and other replicas' within a second.
A crash loses at most that second of statistics, never cached data.

The Prometheus counter is labelled by backend, kind and result, not by tenant: tenants are unbounded and each
label value is a time series kept forever by the scraper. Per-tenant numbers come from the API instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter as Tally

from prometheus_client import CollectorRegistry, Counter

from plugins.cache.backends import CacheBackend

log = logging.getLogger("faas.cache")
KINDS = ("kv", "llm", "semantic")


class CacheCounters:
    def __init__(self, backend: CacheBackend, registry: CollectorRegistry, *, interval: float = 1.0) -> None:
        self.backend = backend
        self.interval = interval
        self._pending: dict[str, Tally[str]] = {}
        self._task: asyncio.Task[None] | None = None
        # A read waits for a flush in flight, or it could miss counts already taken from the tally.
        self._flushing = asyncio.Lock()
        self._lookups = Counter(
            "faas_cache_lookups",
            "Cache lookups, by backend, kind (kv, llm, semantic) and result (hit, miss)",
            ["plugin", "backend", "kind", "result"],
            registry=registry,
        )

    def count(self, tenant_id: str, kind: str, hit: bool) -> None:
        result = "hit" if hit else "miss"
        self._pending.setdefault(tenant_id, Tally())[f"{kind}.{'hits' if hit else 'misses'}"] += 1
        self._lookups.labels("cache", self.backend.name, kind, result).inc()

    async def flush(self) -> None:
        async with self._flushing:
            pending, self._pending = self._pending, {}
            for tenant_id, counts in pending.items():
                try:
                    await self.backend.incr_counters(tenant_id=tenant_id, counts=dict(counts))
                except Exception:
                    # Put the counts back for the next flush rather than lose them to a passing outage.
                    self._pending.setdefault(tenant_id, Tally()).update(counts)
                    raise

    async def read(self, tenant_id: str) -> dict[str, dict[str, int]]:
        await self.flush()
        raw = await self.backend.get_counters(tenant_id=tenant_id)
        return {kind: {f: raw.get(f"{kind}.{f}", 0) for f in ("hits", "misses")} for kind in KINDS}

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="cache-counters")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.flush()
            except Exception:
                log.warning("cache counters could not be flushed; retrying", exc_info=True)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        try:
            await self.flush()
        except Exception:
            log.warning("cache counters lost at shutdown", exc_info=True)
