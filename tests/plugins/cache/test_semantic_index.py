"""Semantic lookups over many entries walk the HNSW index and still return what an exact scan returns."""

from __future__ import annotations

import random

import asyncpg

from app.db import Database
from app.tenancy import TenantStore
from plugins.cache.store import _APPROXIMATE, _EXACT, EMBEDDING_DIM, CacheStore, vector_literal


def _unit(rng: random.Random) -> list[float]:
    v = [rng.gauss(0, 1) for _ in range(EMBEDDING_DIM)]
    norm = sum(x * x for x in v) ** 0.5
    return [x / norm for x in v]


def _near(v: list[float], rng: random.Random, noise: float) -> list[float]:
    w = [x + rng.gauss(0, noise) for x in v]
    norm = sum(x * x for x in w) ** 0.5
    return [x / norm for x in w]


async def test_the_indexed_lookup_finds_the_exact_scans_best_match(database_url: str) -> None:
    rng = random.Random(7)
    db = Database(database_url)
    await db.connect()
    try:
        tenants = TenantStore(db)
        mine = (await tenants.insert_tenant(name="semantic-mine"))[0].id
        other = (await tenants.insert_tenant(name="semantic-other"))[0].id
        vectors = [_unit(rng) for _ in range(3_000)]
        rows = [
            (tenant, f"{key}{i}", key, "m", f"prompt {i}", vector_literal(v), f"answer {i}".encode())
            for tenant, key, offset in ((mine, "chat", 0), (other, "chat", 1), (mine, "other-key", 2))
            for i, v in enumerate(vectors[offset::3] if tenant == other or key == "other-key" else vectors)
        ]
        conn = await asyncpg.connect(database_url)
        try:
            await conn.executemany(
                "INSERT INTO cache_semantic (tenant_id, exact_key, match_key, model, prompt, embedding, response, "
                "expires_at) VALUES ($1, $2, $3, $4, $5, CAST($6 AS vector), $7, now() + interval '1 hour')",
                rows,
            )
        finally:
            await conn.close()
        indexed = CacheStore(db, exact_max=100)  # 3,000 candidates: the HNSW path
        exact = CacheStore(db, exact_max=10**9)  # the exact scan, as the reference
        for i in range(0, 3_000, 60):
            query = _near(vectors[i], rng, 0.01)
            got = await indexed.list_nearest(tenant_id=mine, match_key="chat", embedding=query, threshold=0.9)
            want = await exact.list_nearest(tenant_id=mine, match_key="chat", embedding=query, threshold=0.9)
            assert want and want[0].prompt == f"prompt {i}"
            assert [c.prompt for c in got] == [c.prompt for c in want]
            assert got[0].similarity == want[0].similarity
        # The two paths are what they claim: the many-candidates one walks the HNSW index, the other does not.
        conn = await asyncpg.connect(database_url)
        try:
            args = (mine, "chat", vector_literal(vectors[0]), 0.9, 5)
            async with conn.transaction():
                await conn.execute("SET LOCAL hnsw.iterative_scan = strict_order; SET LOCAL enable_sort = off")
                approximate = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + _APPROXIMATE, *args))
            exact_plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + _EXACT, *args))
        finally:
            await conn.close()
        assert "ix_cache_semantic_hnsw" in approximate and "ix_cache_semantic_hnsw" not in exact_plan
        # A query like nothing stored is a miss on both paths; another tenant's or key's rows never answer.
        stranger = _unit(rng)
        for store in (indexed, exact):
            assert await store.list_nearest(tenant_id=mine, match_key="chat", embedding=stranger, threshold=0.9) == []
            alien = await store.list_nearest(tenant_id=other, match_key="chat", embedding=vectors[0], threshold=0.9)
            assert alien == []  # vectors[0] was stored for `mine` only (the other tenant holds every third from 1)
    finally:
        await db.disconnect()
