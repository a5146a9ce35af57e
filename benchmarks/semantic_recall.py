"""Semantic cache: how many near-duplicates the HNSW path finds, by `hnsw.ef_search`, at a size you choose.

Loads N random unit vectors (384 dimensions: no structure, the hardest case for HNSW; 90% of them one tenant's, all
under one match key, as a chatbot with one system prompt has) into `cache_semantic` on a fresh embedded PostgreSQL,
builds the index as the migrations do, then asks `CacheStore`'s approximate query for 200 perturbed copies of stored
vectors at three noise levels and prints, per ef_search, the share whose own original came back first and the p50.
This is the measurement behind `plugins/cache/store.py`'s EF_SEARCH.

`--index halfvec` builds the index on the vectors cast to halfvec (2 bytes a dimension instead of 4: half the
index, half the memory a search walks) and orders by that cast, to compare with the full-precision index.

    .venv/bin/python benchmarks/semantic_recall.py [--n 100000] [--ef 40,100,200,400] [--index vector|halfvec]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--ef", default="40,100,200,400")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--index", choices=("vector", "halfvec"), default="vector")
    args = ap.parse_args()
    import asyncpg
    import numpy as np

    from app import migrations
    from app.db import plain_url, start_embedded, stop_embedded
    from plugins.cache.store import _APPROXIMATE, EMBEDDING_DIM, vector_literal

    rng = np.random.default_rng(3)
    with tempfile.TemporaryDirectory(prefix="recall-") as tmp:
        url = start_embedded(Path(tmp))
        try:
            await asyncio.to_thread(migrations.upgrade, url)
            conn = await asyncpg.connect(plain_url(url))
            await conn.execute("INSERT INTO tenants (id, name) VALUES ('mine', 'mine'), ('other', 'other')")
            vectors = rng.normal(size=(args.n, EMBEDDING_DIM)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            await conn.execute("DROP INDEX ix_cache_semantic_hnsw")  # built once below: faster than row by row
            t0 = time.perf_counter()
            for start in range(0, args.n, 5000):
                rows = [
                    (
                        "other" if i % 10 == 9 else "mine",
                        f"e{i}",
                        "k",
                        "m",
                        f"p{i}",
                        vector_literal(vectors[i].tolist()),
                    )
                    for i in range(start, min(args.n, start + 5000))
                ]
                await conn.executemany(
                    "INSERT INTO cache_semantic (tenant_id, exact_key, match_key, model, prompt, embedding, response, "
                    "expires_at) VALUES ($1, $2, $3, $4, $5, CAST($6 AS vector), '\\x7b7d', now() + interval '1 day')",
                    rows,
                )
            await conn.execute("SET maintenance_work_mem = '4GB'")
            query = _APPROXIMATE
            if args.index == "halfvec":
                half = f"CAST(embedding AS halfvec({EMBEDDING_DIM}))"
                await conn.execute(f"CREATE INDEX ix_half ON cache_semantic USING hnsw (({half}) halfvec_cosine_ops)")
                query = _APPROXIMATE.replace(
                    "ORDER BY embedding <=> CAST($3 AS vector)", f"ORDER BY {half} <=> CAST($3 AS halfvec)"
                )
                assert query != _APPROXIMATE
            else:
                await conn.execute(
                    "CREATE INDEX ix_cache_semantic_hnsw ON cache_semantic USING hnsw (embedding vector_cosine_ops)"
                )
            await conn.execute("ANALYZE cache_semantic")
            print(f"loaded and indexed {args.n} vectors in {time.perf_counter() - t0:.0f} s", flush=True)
            async with conn.transaction():
                await conn.execute("SET LOCAL enable_sort = off")
                plan = await conn.fetch("EXPLAIN (COSTS OFF) " + query, "mine", "k", vector_literal(vectors[0]), 0.9, 5)
            print("plan:", "; ".join(r[0].strip() for r in plan if "Scan" in r[0]), flush=True)
            mine = [i for i in range(args.n) if i % 10 != 9]
            for noise in (0.005, 0.01, 0.02):
                queries = []
                for _ in range(args.queries):
                    i = mine[int(rng.integers(len(mine)))]
                    q = vectors[i] + rng.normal(scale=noise, size=EMBEDDING_DIM).astype(np.float32)
                    queries.append((i, q / np.linalg.norm(q)))
                similarity = statistics.mean(float(np.dot(vectors[i], q)) for i, q in queries)
                for ef in (int(x) for x in args.ef.split(",")):
                    found, times = 0, []
                    for i, q in queries:
                        async with conn.transaction():
                            await conn.execute(
                                "SELECT set_config('hnsw.iterative_scan', 'strict_order', true), "
                                f"set_config('hnsw.ef_search', '{ef}', true), set_config('enable_sort', 'off', true)"
                            )
                            t = time.perf_counter()
                            rows = await conn.fetch(query, "mine", "k", vector_literal(q.tolist()), 0.9, 5)
                            times.append((time.perf_counter() - t) * 1000)
                        found += bool(rows) and rows[0]["prompt"] == f"p{i}"
                    print(
                        f"similarity {similarity:.3f}  ef_search {ef:4d}: found {found / len(queries):.3f}  "
                        f"p50 {statistics.median(times):.2f} ms",
                        flush=True,
                    )
            await conn.close()
        finally:
            stop_embedded(Path(tmp))


if __name__ == "__main__":
    asyncio.run(main())
