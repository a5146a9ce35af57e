"""Costs as a tenant's data grows: the usage report and ledger retention at 10k, 100k and 1M ledger rows.

Seeds `gateway_usage` through the gateway's own store code (`GatewayStore.insert_usage`, the statement that also
writes the daily rollup), for one tenant among several (the measured tenant holds a third of the rows, over 30
days and 5 models), on a fresh embedded PostgreSQL. Then it measures the 30-day usage report of that tenant
(`reports.usage_page`, what `GET /api/v1/gateway/usage` runs) and how fast retention deletes old rows
(`GatewayStore.expire_usage`, what `FAAS_GATEWAY_USAGE_RETENTION_DAYS` runs). The last line printed is one JSON
object.

    .venv/bin/python benchmarks/scale.py [--sizes 10000,100000,1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
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
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
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
            await db.disconnect()
        finally:
            stop_embedded(Path(tmp))
    print(json.dumps({"usage_report_p50_ms": report_ms, "retention_rows_per_s": round(rate)}))


if __name__ == "__main__":
    asyncio.run(main())
