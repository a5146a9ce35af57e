"""How fast the cache sweep deletes expired rows on PostgreSQL: the expiry rate it keeps up with.

Inserts N expired key/value entries (and N/4 expired semantic rows) for one tenant, with as many live entries beside
them, then times one `sweep()` of the service (batches of 5,000 until fewer are left, at most 100 per table a tick).
Prints rows deleted, seconds, rows per second, and whether the tick stopped at its bound.

    .venv/bin/python benchmarks/cache_sweep.py [--rows 200000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg

from benchmarks._app import embedded_server, fresh_database, running_app
from plugins.cache.interface import CACHE
from plugins.cache.service import DirectCacheService


async def main(rows: int) -> None:
    from plugins.cache import plugin

    with embedded_server() as server_url:
        url = await fresh_database(server_url)
        async with running_app(url, [plugin]) as (_app, state, tenant_info):
            cache = state["services"].get(CACHE)
            assert isinstance(cache, DirectCacheService)
            tenant = tenant_info["tenant_id"]
            conn = await asyncpg.connect(url)
            try:
                for live, age in ((False, "-1 second"), (True, "1 hour")):
                    await conn.execute(
                        "INSERT INTO cache_entries (tenant_id, namespace, key, generation, value, expires_at) "
                        "SELECT $1, 'bench', $2 || i, 0, '\\x7b7d', now() + CAST($3 AS text)::interval "
                        "FROM generate_series(1, $4) i",
                        tenant,
                        "live" if live else "old",
                        age,
                        rows,
                    )
                await conn.execute(
                    "INSERT INTO cache_semantic (tenant_id, exact_key, match_key, model, prompt, embedding, "
                    "response, expires_at) SELECT $1, 'e' || i, 'm', 'mock-1', 'p', "
                    "CAST(array_fill(0.1, ARRAY[384]) AS vector), '\\x7b7d', now() - interval '1 second' "
                    "FROM generate_series(1, $2) i",
                    tenant,
                    rows // 4,
                )
                await conn.execute("ANALYZE cache_entries; ANALYZE cache_semantic")
                t0 = time.perf_counter()
                swept = await cache.sweep()
                elapsed = time.perf_counter() - t0
                left = await conn.fetchval("SELECT count(*) FROM cache_entries WHERE expires_at <= now()")
                live = await conn.fetchval("SELECT count(*) FROM cache_entries WHERE expires_at > now()")
            finally:
                await conn.close()
    print(
        f"deleted {swept.deleted:,} expired rows in {elapsed:.2f} s ({swept.deleted / elapsed:,.0f} rows/s); "
        f"stopped at the per-tick bound: {swept.more}; expired left {left:,}; live kept {live:,} of {rows:,}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="expired key/value entries (semantic: a quarter)")
    asyncio.run(main(parser.parse_args().rows))
