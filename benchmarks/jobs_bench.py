"""Job queue: enqueue-to-start latency with one worker, and no-op jobs per second.

Everything runs in one process, as in `faas serve` (the worker in the app's lifespan, on the same event loop as the
code that enqueues), on an embedded PostgreSQL. Jobs are enqueued through `JobQueue.enqueue`, the plugins' path.

- latency: one job at a time into an empty queue; from the call to `enqueue` to the first line of the handler
  (the insert, the commit's NOTIFY, procrastinate's fetch, our claim).
- enqueue: jobs stored per second, 20 concurrent callers, no worker running.
- drain: those jobs, run by one worker at each concurrency: from the first handler start to the last job
  `succeeded` in the database.
- mixed: 20 callers enqueueing while one worker (default concurrency) runs them: from the first enqueue to the last
  job succeeded.

    .venv/bin/python benchmarks/jobs_bench.py [--latency-n 300] [--n 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.jobs import JobContext, JobQueue
from app.plugin_kit import LocalDescription, PluginInfo, Readiness
from app.plugins import Plugin, PluginContext, ServiceKey
from benchmarks._app import embedded_server, fresh_database, percentiles, running_app


class Clock:
    """Handler start times, and a way to wait for the n-th start."""

    def __init__(self) -> None:
        self.starts: dict[str, float] = {}
        self.waiters: dict[str, asyncio.Event] = {}

    async def noop(self, ctx: JobContext) -> None:
        self.starts[ctx.job.id] = time.perf_counter()
        event = self.waiters.get(ctx.job.id)
        if event is not None:
            event.set()


class BenchService:
    """A service that only describes itself: the plugin exists for its job kind."""

    def __init__(self, about: LocalDescription) -> None:
        self._about = about

    async def describe(self) -> PluginInfo:
        return self._about.info()

    async def ready(self) -> Readiness:
        return {"ok": True}


def bench_plugin(clock: Clock) -> Plugin[BenchService]:
    @asynccontextmanager
    async def direct(ctx: PluginContext) -> AsyncIterator[BenchService]:
        yield BenchService(LocalDescription(ctx, ()))

    key: ServiceKey[BenchService] = ServiceKey("bench")
    return Plugin(key=key, direct=direct, jobs={"bench.noop": clock.noop})


async def until_succeeded(db: Any, ids: list[str]) -> float:
    """When the last of `ids` (every job of this fresh database) succeeded, within the 20 ms poll."""
    while await db.fetch_val("SELECT count(*) FROM jobs WHERE status = 'succeeded'") < len(ids):  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    return time.perf_counter()


async def enqueue_many(queue: JobQueue, tenant: str, n: int, callers: int = 20) -> list[str]:
    ids: list[str] = []

    async def caller(count: int) -> None:
        for _ in range(count):
            ids.append((await queue.enqueue(tenant_id=tenant, kind="bench.noop")).id)

    await asyncio.gather(*(caller(n // callers + (i < n % callers)) for i in range(callers)))
    return ids


async def latency(server_url: str, n: int) -> None:
    clock = Clock()
    url = await fresh_database(server_url)
    async with running_app(url, [bench_plugin(clock)], FAAS_JOBS_CONCURRENCY="1") as (_app, state, tenant):
        queue: JobQueue = state["jobs"]
        samples: list[float] = []
        for i in range(n + 20):
            t0 = time.perf_counter()
            job = await queue.enqueue(tenant_id=tenant["tenant_id"], kind="bench.noop")
            event = clock.waiters.setdefault(job.id, asyncio.Event())
            if job.id not in clock.starts:
                await asyncio.wait_for(event.wait(), 10)
            if i >= 20:  # warm-up: prepared statements, pools
                samples.append(clock.starts[job.id] - t0)
        print(f"enqueue-to-start, one worker, empty queue: {percentiles(samples)}")


async def throughput(server_url: str, n: int) -> None:
    clock = Clock()
    plugin = bench_plugin(clock)
    for concurrency in ("1", "4", "16"):
        url = await fresh_database(server_url)
        async with running_app(url, [plugin], FAAS_JOBS_WORKER="off") as (_app, state, tenant):
            t0 = time.perf_counter()
            ids = await enqueue_many(state["jobs"], tenant["tenant_id"], n)
            stored = time.perf_counter() - t0
        if concurrency == "1":
            print(f"enqueue, 20 callers, no worker: {n / stored:7.0f} jobs/s  ({n} in {stored:.2f} s)")
        async with running_app(url, [plugin], FAAS_JOBS_CONCURRENCY=concurrency) as (_app, state, _tenant):
            end = await until_succeeded(state["db"], ids)
            first = min(clock.starts[i] for i in ids)
            rate = n / (end - first)
            print(f"drain, one worker, concurrency {concurrency:>2s}: {rate:7.0f} jobs/s  ({n} no-op jobs)")

    url = await fresh_database(server_url)
    async with running_app(url, [plugin]) as (_app, state, tenant):
        t0 = time.perf_counter()
        ids = await enqueue_many(state["jobs"], tenant["tenant_id"], n)
        end = await until_succeeded(state["db"], ids)
        print(f"mixed, 20 callers + one worker (concurrency 4): {n / (end - t0):7.0f} jobs/s end to end")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--latency-n", type=int, default=300)
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()
    with embedded_server() as server_url:
        await latency(server_url, args.latency_n)
        await throughput(server_url, args.n)


if __name__ == "__main__":
    asyncio.run(main())
