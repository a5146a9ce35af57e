"""Hit and miss counters survive a failing tenant and shutdown: no tenant's counts are lost to another's failed
write, a stats read never fails because of one, and stop() finishes the flush it interrupts."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from plugins.cache.counters import CacheCounters


@pytest.fixture(params=[("direct", "postgres"), ("direct", "redis")], ids="-".join)
def variant(request: pytest.FixtureRequest) -> tuple[str, str]:
    """Direct only: these tests drive the service's own counters and backend."""
    mode, backend = request.param
    return str(mode), str(backend)


async def test_a_tenant_whose_write_fails_keeps_its_counts_and_fails_no_one_else(
    cache: Any, tenants: list[dict[str, str]], cache_backend: str
) -> None:
    mine, other = tenants[0]["tenant_id"], tenants[1]["tenant_id"]
    # PostgreSQL refuses counters of a tenant that does not exist (deleted while its counts were pending).
    ghost = "no-such-tenant" if cache_backend == "postgres" else None
    if ghost is not None:
        cache.counters.count(ghost, "kv", True)
    cache.counters.count(other, "kv", False)
    cache.counters.count(mine, "kv", True)
    stats = await cache.stats(tenant_id=mine)
    assert stats.kv.hits == 1 and stats.kv.misses == 0
    assert (await cache.stats(tenant_id=other)).kv.misses == 1  # flushed although the ghost's write failed first
    if ghost is not None:
        assert cache.counters.batcher.pending == 1  # the ghost's count, kept for the next flush


async def test_stop_completes_the_flush_it_interrupts(cache: Any, tenants: list[dict[str, str]]) -> None:
    t = tenants[0]["tenant_id"]
    counters = CacheCounters(cache.backend, CollectorRegistry(), interval=0.0)
    counters.start()
    counters.count(t, "llm", True)
    for _ in range(100):  # until the loop has taken the count and is waiting on the backend
        await asyncio.sleep(0)
        if not counters.batcher.pending:
            break
    assert not counters.batcher.pending
    await counters.stop()
    assert await cache.backend.get_counters(tenant_id=t) == {"llm.hits": 1}
