"""Costs as a tenant's data grows: semantic cache lookups, the usage report and ledger retention.

Seeds `gateway_usage` through the gateway's own store code (`GatewayStore.insert_usage`, the statement that also
writes the daily rollup), for one tenant among several (the measured tenant holds a third of the rows, over 30
days and 5 models), on a fresh embedded PostgreSQL. Then it measures the 30-day usage report of that tenant
(`reports.usage_page`, what `GET /api/v1/gateway/usage` runs) and how fast retention deletes old rows
(`GatewayStore.expire_usage`, what `FAAS_GATEWAY_USAGE_RETENTION_DAYS` runs). The last line printed is one JSON
object.

The semantic cache is seeded through `CacheStore.insert_semantic` (one tenant and one match key, as a chatbot with
one system prompt has, among other tenants' entries), and `CacheStore.list_nearest` is timed for a near-duplicate
of a stored prompt (a hit) and for an unrelated one (a miss), with the share of near-duplicates found. The vectors
are random unit vectors: no structure, the hardest case for HNSW (real sentence embeddings cluster). Each insert
also maintains the HNSW index, which makes seeding the slow part: 100k entries took 10 minutes on a loaded
two-core machine. `--semantic-bulk` seeds a size at or above it with COPY instead, with the HNSW index dropped and
then built again from its own definition (`pg_get_indexdef`, so exactly the migration's index) over all the rows,
as `CREATE INDEX` on a loaded table does it: the rows, the index and the lookups measured are the same; only the
way they got there is faster. The lookups are timed after that, through `CacheStore.list_nearest` as before.

    .venv/bin/python benchmarks/scale.py [--sizes 10000,100000,1000000] [--semantic-sizes 10000,100000]
        [--semantic-bulk 1000000] [--sweep-rows 200000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TENANTS = ("ten_measured", "ten_other_a", "ten_other_b")
MODELS = ("gpt-a", "gpt-b", "claude-c", "mock-1", "embed-e")


async def seed(store: object, upto: int, have: int) -> None:
    from plugins.gateway.store import GatewayStore, UsageEntry

    assert isinstance(store, GatewayStore)
    now = datetime.now(UTC)
    batch: list[UsageEntry] = []
    for i in range(have, upto):
        batch.append(
            UsageEntry(
                tenant_id=TENANTS[i % len(TENANTS)],
                created_at=now - timedelta(days=(i // 7) % 45, seconds=i % 86_000),
                request_id=f"req{i}",
                model=MODELS[i % len(MODELS)],
                deployment="d",
                provider="openai",
                prompt_tokens=100 + i % 50,
                completion_tokens=20 + i % 30,
                cost_usd=0.0001 * (i % 7),
                latency_ms=10.0 + i % 90,
                cache_hit=i % 11 == 0,
                stream=False,
                status=200 if i % 23 else 500,
                error=None,
            )
        )
        if len(batch) == 10_000:
            await store.insert_usage(batch)
            batch = []
    if batch:
        await store.insert_usage(batch)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--semantic-sizes", default="10000,100000")
    ap.add_argument(
        "--semantic-bulk",
        type=int,
        default=0,
        help="seed semantic sizes at or above this by COPY, then build the HNSW index (0: never)",
    )
    ap.add_argument("--sweep-rows", type=int, default=200_000, help="expired cache entries the sweep is timed on")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    semantic_sizes = [int(x) for x in args.semantic_sizes.split(",") if x]
    sys.path.insert(0, str(ROOT))
    from app import migrations
    from app.db import Database, start_embedded, stop_embedded
    from plugins.gateway.reports import usage_page
    from plugins.gateway.schemas import UsageQuery
    from plugins.gateway.store import GatewayStore

    report_ms: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="scale-") as tmp:
        url = start_embedded(Path(tmp))
        try:
            await asyncio.to_thread(migrations.upgrade, url)
            db = Database(url)
            await db.connect()
            store = GatewayStore(db)
            have = 0
            for size in sizes:
                t0 = time.perf_counter()
                await seed(store, size, have)
                have = size
                await db.execute("ANALYZE gateway_usage")
                await db.execute("ANALYZE gateway_usage_daily")
                print(f"seeded {size} ledger rows in {time.perf_counter() - t0:.1f} s", flush=True)
                times = []
                for _ in range(50):
                    t = time.perf_counter()
                    page = await usage_page(store, tenant_id=TENANTS[0], query=UsageQuery(limit=500))
                    times.append((time.perf_counter() - t) * 1000)
                assert page.data, "the report is empty"
                report_ms[str(size)] = round(statistics.median(times), 3)
                print(f"  30-day usage report p50 {report_ms[str(size)]:.2f} ms ({len(page.data)} rows)", flush=True)
            # Retention: every row older than 30 days goes, batch by batch, as the gateway's task does it.
            old = await db.fetch_val("SELECT count(*) FROM gateway_usage WHERE created_at < now() - interval '30 days'")
            t0 = time.perf_counter()
            gone = 0
            while (n := await store.expire_usage(days=30)) > 0:
                gone += n
            elapsed = time.perf_counter() - t0
            assert gone == old
            rate = gone / elapsed if elapsed else 0.0
            print(f"retention dropped {gone} rows in {elapsed:.2f} s: {rate:.0f} rows/s", flush=True)
            semantic = await semantic_lookups(db, semantic_sizes, bulk_from=args.semantic_bulk)
            sweep = await sweep_rate(db, args.sweep_rows)
            await db.disconnect()
        finally:
            stop_embedded(Path(tmp))
    print(
        json.dumps(
            {
                "semantic_lookup_p50_ms": {k: v["hit"] for k, v in semantic.items()},
                "semantic_miss_p50_ms": {k: v["miss"] for k, v in semantic.items()},
                "semantic_recall": {k: v["recall"] for k, v in semantic.items()},
                "usage_report_p50_ms": report_ms,
                "retention_rows_per_s": round(rate),
                "sweep_rows_per_s": round(sweep),
            }
        )
    )


MATCH_KEY = "one-model-one-system-prompt"
SEMANTIC_COLUMNS = ["tenant_id", "exact_key", "match_key", "model", "prompt", "embedding", "response", "expires_at"]


async def bulk_semantic(db: object, rows: Iterator[tuple[str, int, list[float]]], count: int) -> None:
    """COPY the rows into `cache_semantic` with its HNSW index dropped, then build the index again from its own
    definition over every row (what `CREATE INDEX` on a loaded table does: minutes instead of hours)."""
    from app.db import Database
    from plugins.cache.store import vector_literal

    assert isinstance(db, Database)
    expires = datetime.now(UTC) + timedelta(days=1)

    async def lines() -> AsyncIterator[bytes]:
        block: list[str] = []
        for tenant, i, v in rows:
            # COPY's text format: tab-separated; a bytea as \x hex, its backslash escaped.
            block.append(f"{tenant}\te{i}\t{MATCH_KEY}\tm\tprompt {i}\t{vector_literal(v)}\t\\\\x7b7d\t{expires}\n")
            if len(block) == 5_000:
                yield "".join(block).encode()
                block = []
        if block:
            yield "".join(block).encode()

    t0 = time.perf_counter()
    async with db.connection() as conn:
        raw = conn.raw_connection
        ddl = await raw.fetchval("SELECT pg_get_indexdef('ix_cache_semantic_hnsw'::regclass)")
        await raw.execute("DROP INDEX ix_cache_semantic_hnsw")
        await raw.copy_to_table("cache_semantic", source=lines(), columns=SEMANTIC_COLUMNS)
        print(f"  copied {count} rows in {time.perf_counter() - t0:.1f} s; now {ddl}", flush=True)
        t1 = time.perf_counter()
        await raw.execute("SET maintenance_work_mem = '6GB'")
        await raw.execute("SET max_parallel_maintenance_workers = 2")
        await raw.execute(ddl)
        print(f"  HNSW index built in {time.perf_counter() - t1:.1f} s", flush=True)


async def semantic_lookups(db: object, sizes: list[int], *, bulk_from: int = 0) -> dict[str, dict[str, float]]:
    import numpy as np

    from app.db import Database
    from app.tenancy import TenantStore
    from plugins.cache.store import EMBEDDING_DIM, CacheStore

    assert isinstance(db, Database)
    rng = np.random.default_rng(3)
    tenants = TenantStore(db)
    mine = (await tenants.insert_tenant(name="semantic-measured"))[0].id
    other = (await tenants.insert_tenant(name="semantic-other"))[0].id
    store = CacheStore(db)
    stored: list[np.ndarray] = []  # the measured tenant's vectors, float32 blocks (a million lists would not fit)
    out: dict[str, dict[str, float]] = {}
    have = 0

    def unit(v: np.ndarray) -> list[float]:
        return [float(x) for x in v / np.linalg.norm(v)]

    def generate(start: int, end: int) -> Iterator[tuple[str, int, list[float]]]:
        """(tenant, number, unit vector) for entries start..end; a tenth belong to another tenant."""
        for lo in range(start, end, 10_000):
            hi = min(end, lo + 10_000)
            block = rng.normal(size=(hi - lo, EMBEDDING_DIM)).astype(np.float32)
            block /= np.linalg.norm(block, axis=1, keepdims=True)
            owners = [other if i % 10 == 9 else mine for i in range(lo, hi)]
            stored.append(block[[k for k, t in enumerate(owners) if t == mine]])
            for k, tenant in enumerate(owners):
                yield tenant, lo + k, block[k].tolist()

    for size in sizes:
        t0 = time.perf_counter()
        if bulk_from and size >= bulk_from:
            await bulk_semantic(db, generate(have, size), size - have)
        else:
            pending = []
            for tenant, i, v in generate(have, size):
                pending.append(
                    store.insert_semantic(
                        tenant_id=tenant,
                        exact_key=f"e{i}",
                        match_key=MATCH_KEY,
                        model="m",
                        prompt=f"prompt {i}",
                        embedding=v,
                        response=b"{}",
                        ttl_seconds=86_400,
                    )
                )
                if len(pending) == 8:  # the pool's connections, busy together
                    await asyncio.gather(*pending)
                    pending = []
            await asyncio.gather(*pending)
        have = size
        await db.execute("ANALYZE cache_semantic")
        print(f"seeded {size} semantic cache entries in {time.perf_counter() - t0:.1f} s", flush=True)
        mine_vectors = np.concatenate(stored)
        timings: dict[str, list[float]] = {"hit": [], "miss": []}
        found_hits = 0
        for _ in range(50):
            for kind in ("hit", "miss"):
                if kind == "hit":
                    base = mine_vectors[int(rng.integers(len(mine_vectors)))].astype(np.float64)
                    query = unit(base + rng.normal(scale=0.005, size=EMBEDDING_DIM))
                else:
                    query = unit(rng.normal(size=EMBEDDING_DIM))
                t = time.perf_counter()
                found = await store.list_nearest(tenant_id=mine, match_key=MATCH_KEY, embedding=query, threshold=0.95)
                timings[kind].append((time.perf_counter() - t) * 1000)
                assert not found or kind == "hit", "an unrelated prompt matched"
                found_hits += bool(found) and kind == "hit"
        out[str(size)] = {k: round(statistics.median(v), 3) for k, v in timings.items()}
        out[str(size)]["recall"] = found_hits / len(timings["hit"])
        print(
            f"  semantic lookup p50: hit {out[str(size)]['hit']:.2f} ms, miss {out[str(size)]['miss']:.2f} ms; "
            f"near-duplicates found {found_hits} of {len(timings['hit'])}"
        )
    return out


async def sweep_rate(db: object, rows: int) -> float:
    """Rows a second the cache sweep deletes from a backlog of `rows` expired key/value entries and `rows // 10`
    expired semantic rows (beside the live ones already seeded, under the HNSW index), in the sweep's own batches
    (`PostgresCacheBackend.sweep`, `CacheStore.sweep_semantic`: what `DirectCacheService.sweep` runs each tick)."""
    from app.db import Database
    from app.tenancy import TenantStore
    from plugins.cache.backends import PostgresCacheBackend
    from plugins.cache.store import CacheStore

    assert isinstance(db, Database)
    tenant = (await TenantStore(db).insert_tenant(name="sweep-measured"))[0].id
    await db.execute(
        "INSERT INTO cache_entries (tenant_id, namespace, key, generation, value, expires_at) "
        "SELECT :t, 'bench', 'old' || i, 0, '\\x7b7d', now() - interval '1 second' FROM generate_series(1, :n) i",
        {"t": tenant, "n": rows},
    )
    await db.execute(
        "INSERT INTO cache_semantic (tenant_id, exact_key, match_key, model, prompt, embedding, response, expires_at) "
        "SELECT :t, 'old' || i, 'm', 'm', 'p', CAST(array_fill(0.1, ARRAY[384]) AS vector), '\\x7b7d', "
        "now() - interval '1 second' FROM generate_series(1, :n) i",
        {"t": tenant, "n": rows // 10},
    )
    await db.execute("ANALYZE cache_entries")
    await db.execute("ANALYZE cache_semantic")
    backend, store = PostgresCacheBackend(db), CacheStore(db)
    t0 = time.perf_counter()
    deleted = 0
    for sweep_some in (backend.sweep, store.sweep_semantic):
        while (n := await sweep_some(batch=5000)) > 0:
            deleted += n
    elapsed = time.perf_counter() - t0
    assert deleted == rows + rows // 10, deleted
    print(f"cache sweep deleted {deleted} expired rows in {elapsed:.2f} s: {deleted / elapsed:.0f} rows/s", flush=True)
    return deleted / elapsed


if __name__ == "__main__":
    asyncio.run(main())
