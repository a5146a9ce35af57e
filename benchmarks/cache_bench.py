"""Cache get/set latency (p50, p99) for each backend, through the service and through HTTP in-process.

Sequential calls (one at a time) on an embedded PostgreSQL and on Redis at 127.0.0.1:6379 (its keys go under a
random prefix that is deleted afterwards). Values are a ~200-byte JSON object.

    .venv/bin/python benchmarks/cache_bench.py [--n 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._app import client, embedded_server, fresh_database, percentiles, running_app
from plugins.cache.interface import CACHE

REDIS_URL = "redis://127.0.0.1:6379/0"
VALUE = {"user": "u-123", "items": list(range(20)), "text": "x" * 100}


async def bench_backend(server_url: str, backend: str, n: int) -> None:
    from plugins.cache import plugin

    prefix = f"bench:{secrets.token_hex(4)}:"
    env = {"REDIS_URL": REDIS_URL, "FAAS_CACHE_REDIS_PREFIX": prefix} if backend == "redis" else {}
    url = await fresh_database(server_url)
    async with running_app(url, [plugin], **env) as (app, state, tenant_info):
        cache = state["services"].get(CACHE)
        tenant, key = tenant_info["tenant_id"], tenant_info["api_key"]
        for label, run in (("service", service_ops(cache, tenant, n)), ("http", http_ops(app, key, n))):
            sets, gets = await run
            print(f"{backend:8s} {label:7s} set  {percentiles(sets)}")
            print(f"{backend:8s} {label:7s} get  {percentiles(gets)}")
    if backend == "redis":
        import redis.asyncio as aioredis

        r = aioredis.Redis.from_url(REDIS_URL)
        keys = [k async for k in r.scan_iter(match=prefix + "*", count=1000)]
        if keys:
            await r.delete(*keys)
        await r.aclose()


async def service_ops(cache: object, tenant: str, n: int) -> tuple[list[float], list[float]]:
    sets: list[float] = []
    gets: list[float] = []
    for i in range(n):
        t0 = time.perf_counter()
        await cache.set_entry(tenant_id=tenant, namespace="bench", key=f"k{i}", value=VALUE, ttl_seconds=600)  # type: ignore[attr-defined]
        sets.append(time.perf_counter() - t0)
    for i in range(n):
        t0 = time.perf_counter()
        await cache.get_entry(tenant_id=tenant, namespace="bench", key=f"k{i}")  # type: ignore[attr-defined]
        gets.append(time.perf_counter() - t0)
    return sets, gets


async def http_ops(app: object, key: str, n: int) -> tuple[list[float], list[float]]:
    sets: list[float] = []
    gets: list[float] = []
    async with client(app, key) as c:
        for i in range(n):
            t0 = time.perf_counter()
            r = await c.put(f"/api/v1/cache/http/k{i}", json={"value": VALUE, "ttl_seconds": 600})
            sets.append(time.perf_counter() - t0)
            assert r.status_code == 200, r.text
        for i in range(n):
            t0 = time.perf_counter()
            r = await c.get(f"/api/v1/cache/http/k{i}")
            gets.append(time.perf_counter() - t0)
            assert r.status_code == 200, r.text
    return sets, gets


async def main(n: int) -> None:
    with embedded_server() as server_url:
        for backend in ("postgres", "redis"):
            await bench_backend(server_url, backend, n)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="operations of each kind")
    asyncio.run(main(parser.parse_args().n))
