"""What `/health/ready` costs next to `/health/live`, and how much database work it causes.

Starts an embedded PostgreSQL, migrates a fresh database and runs the app in-process (all seven plugins direct,
lifespan included). Times sequential calls of both probes, then a burst of concurrent `/health/ready` calls (what
an unauthenticated caller can send), and counts the transactions PostgreSQL committed for the app's database
meanwhile (pg_stat_database, read after the statistics are flushed).

Run: .venv/bin/python benchmarks/health_bench.py [--calls 1000] [--concurrency 20]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.db import plain_url
from app.plugins import discover
from benchmarks._app import embedded_server, fresh_database, percentiles, running_app


async def sequential(c: httpx.AsyncClient, path: str, calls: int) -> list[float]:
    out: list[float] = []
    for _ in range(calls):
        started = time.perf_counter()
        r = await c.get(path)
        out.append(time.perf_counter() - started)
        assert r.status_code == 200, r.text
    return out


async def committed(url: str) -> int:
    conn = await asyncpg.connect(plain_url(url))
    try:
        value: int = await conn.fetchval("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
        return value
    finally:
        await conn.close()


async def main(calls: int, concurrency: int) -> None:
    with embedded_server() as server:
        url = await fresh_database(server)
        async with running_app(url, list(discover())) as (app, _state, _tenant):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as c:
                for path in ("/health/live", "/health/ready"):
                    await sequential(c, path, 50)  # warm-up
                live = await sequential(c, "/health/live", calls)
                ready = await sequential(c, "/health/ready", calls)
                await asyncio.sleep(11)  # PostgreSQL flushes an idle backend's statistics within 10 s
                before = await committed(url)

                async def burst(n: int) -> None:
                    for _ in range(n):
                        assert (await c.get("/health/ready")).status_code == 200

                started = time.perf_counter()
                await asyncio.gather(*(burst(calls // concurrency) for _ in range(concurrency)))
                burst_seconds = time.perf_counter() - started
                await asyncio.sleep(11)
                after = await committed(url)
    sent = (calls // concurrency) * concurrency
    ratio = statistics.median(ready) / statistics.median(live)
    print(f"in-process, one replica, {calls} sequential calls each")
    print(f"  /health/live : {percentiles(live)}")
    print(f"  /health/ready: {percentiles(ready)}")
    print(f"  ready / live (p50): {ratio:.1f}x")
    print(f"{sent} /health/ready calls from {concurrency} concurrent callers in {burst_seconds:.2f} s:")
    print(f"  {sent / burst_seconds:.0f} calls/s; database transactions meanwhile: {after - before - 1}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=20)
    args: Any = parser.parse_args()
    asyncio.run(main(args.calls, args.concurrency))
