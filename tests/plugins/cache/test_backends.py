"""Backend details the API cannot show: cleared and expired entries are reclaimed (PostgreSQL sweeps them,
Redis expires them by their own TTL)."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from tests.plugins.cache.conftest import REDIS_URL


@pytest.fixture(params=[("direct", "postgres"), ("direct", "redis")], ids="-".join)
def variant(request: pytest.FixtureRequest) -> tuple[str, str]:
    """Direct only: these tests reach into the backend (`sweep`, its Redis prefix)."""
    mode, backend = request.param
    return str(mode), str(backend)


async def test_cleared_and_expired_entries_are_reclaimed(
    cache: Any, tenants: list[dict[str, str]], database_url: str, cache_backend: str
) -> None:
    t = tenants[0]["tenant_id"]
    await cache.set_entry(tenant_id=t, namespace="a", key="cleared", value=1, ttl_seconds=60)
    await cache.set_entry(tenant_id=t, namespace="b", key="expired", value=1, ttl_seconds=1)
    await cache.set_entry(tenant_id=t, namespace="b", key="live", value=1, ttl_seconds=60)
    await cache.clear_namespace(tenant_id=t, namespace="a")
    await asyncio.sleep(1.1)
    swept = await cache.sweep()
    if cache_backend == "redis":
        assert swept == 0
        client = aioredis.Redis.from_url(REDIS_URL)
        try:
            prefix = cache.backend.prefix
            ttls = [await client.pttl(k) async for k in client.scan_iter(match=prefix + "val:*")]
        finally:
            await client.aclose()
        assert ttls and all(0 < ttl <= 60_000 for ttl in ttls)  # every entry carries its own expiry
        return
    assert swept == 2
    conn = await asyncpg.connect(database_url)
    try:
        keys = [r["key"] for r in await conn.fetch("SELECT key FROM cache_entries")]
    finally:
        await conn.close()
    assert keys == ["live"]
    assert (await cache.get_entry(tenant_id=t, namespace="b", key="live")).value == 1
