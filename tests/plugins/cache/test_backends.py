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
    swept = (await cache.sweep()).deleted
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


async def test_the_sweep_keeps_up_with_any_number_of_expired_rows(
    cache: Any, tenants: list[dict[str, str]], database_url: str, cache_backend: str
) -> None:
    t = tenants[0]["tenant_id"]
    await cache.set_entry(tenant_id=t, namespace="n", key="live", value=1, ttl_seconds=60)
    conn = await asyncpg.connect(database_url)
    try:
        # 23,000 entries and 7,000 semantic rows that expired a second ago: more than one 5,000-row batch of each.
        await conn.execute(
            "INSERT INTO cache_entries (tenant_id, namespace, key, generation, value, expires_at) "
            "SELECT $1, 'n', 'k' || i, 0, '\\x00', now() - interval '1 second' FROM generate_series(1, 23000) i",
            t,
        )
        await conn.execute(
            "INSERT INTO cache_semantic (tenant_id, exact_key, match_key, model, prompt, embedding, response, "
            "expires_at) SELECT $1, 'e' || i, 'm', 'mock-1', 'p', array_fill(0.1, ARRAY[384])::vector, '\\x00', "
            "now() - interval '1 second' FROM generate_series(1, 7000) i",
            t,
        )

        async def left() -> tuple[int, int]:
            entries = await conn.fetchval("SELECT count(*) FROM cache_entries WHERE key <> 'live'")
            semantic = await conn.fetchval("SELECT count(*) FROM cache_semantic")
            return entries, semantic

        if cache_backend == "redis":  # the entries are Redis's; the semantic rows are PostgreSQL's whatever the backend
            await conn.execute("DELETE FROM cache_entries")
        bounded = await cache.sweep(batch=1000, max_batches=4)  # a tick stops at its bound and says so
        assert bounded.more and bounded.deleted == (4000 if cache_backend == "redis" else 8000)
        rest = await cache.sweep()  # batch after batch until fewer than a batch are left
        assert not rest.more and (await left()) == (0, 0)
        assert bounded.deleted + rest.deleted == (7000 if cache_backend == "redis" else 30000)
    finally:
        await conn.close()
    assert (await cache.get_entry(tenant_id=t, namespace="n", key="live")).value == 1
