"""Hit and miss counters: per tenant in the backend (read by `GET /api/v1/cache/-/stats`), and in Prometheus.

A lookup only adds to an in-memory tally; a background task adds the tally to the backend every second, and
`stats()` flushes first, so a replica always reads its own counts exactly and other replicas' within a second.
A crash loses at most that second of statistics, never cached data; a failed write keeps its tenant's counts
for the next flush and never fails another tenant's flush or anyone's `stats()`.

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
        self._inflight: set[asyncio.Future[None]] = set()
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
        """Add the tallies to the backend. Never raises: a tenant whose write fails keeps its counts for later."""
        # Shielded: counts taken from the tally must reach the backend or go back, even when the caller is
        # cancelled (stop() cancelling the loop, a stats request whose client left); the next flush waits for it.
        inflight = asyncio.ensure_future(self._flush())
        self._inflight.add(inflight)
        inflight.add_done_callback(self._inflight.discard)
        await asyncio.shield(inflight)

    async def _flush(self) -> None:
        async with self._flushing:
            pending, self._pending = self._pending, {}
            try:
                while pending:
                    tenant_id, counts = next(iter(pending.items()))
                    try:
                        await self.backend.incr_counters(tenant_id=tenant_id, counts=dict(counts))
                    except Exception:
                        # Keep the counts for the next flush rather than lose them to a passing outage, and
                        # still try the other tenants: one tenant's failure is not theirs.
                        self._put_back(tenant_id, counts)
                        log.warning("cache counters of tenant %s not flushed; retrying", tenant_id, exc_info=True)
                    del pending[tenant_id]
            finally:
                for tenant_id, counts in pending.items():  # only on BaseException: nothing is dropped
                    self._put_back(tenant_id, counts)

    def _put_back(self, tenant_id: str, counts: Tally[str]) -> None:
        self._pending.setdefault(tenant_id, Tally()).update(counts)

    async def read(self, tenant_id: str) -> dict[str, dict[str, int]]:
        await self.flush()
        raw = await self.backend.get_counters(tenant_id=tenant_id)
        return {kind: {f: raw.get(f"{kind}.{f}", 0) for f in ("hits", "misses")} for kind in KINDS}

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="cache-counters")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.flush()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        # Waits for a flush the cancelled loop left in flight, then sends what remains.
        await self.flush()
        if self._pending:
            log.warning("cache counters of %d tenant(s) lost at shutdown", len(self._pending))
