"""Agents: get and list throughput, and what a chat turn adds beyond the model call, direct and with the gateway
remote.

An embedded PostgreSQL and a migrated database; the app (gateway + agents) in-process with its lifespan, called
through ASGI. `direct`: the gateway in the same app. `gateway remote`: the gateway is a `faas serve` process on
loopback (same database) and the agents reach it over signed HTTP.

- get / list: `--agents` agents of one tenant, then `--calls` requests at concurrency `--concurrency`: requests/s.
- chat turn: `--turns` sequential chat messages on one thread with `mock-1` (the gateway's in-process model, so the
  model itself costs ~nothing): the turn's latency, and the turn minus the model step's own recorded duration (the
  gateway call, HTTP hop included when remote) = what the agents service adds: loading the agent and history,
  starting the run, recording the step, settling the run and its answer.

Run: .venv/bin/python benchmarks/agents_bench.py [--agents 200] [--calls 2000] [--concurrency 20] [--turns 300]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from app.plugins import discover
from benchmarks._app import ADMIN_KEY, client, embedded_server, fresh_database, percentiles, running_app
from benchmarks.remote_overhead import free_port, serve, wait_live

URL = "/api/v1/agents"
SECRET = "bench-internal-secret-0123456789"


async def throughput(api: httpx.AsyncClient, paths: list[str], concurrency: int) -> float:
    queue = list(paths)

    async def worker() -> None:
        while queue:
            r = await api.get(queue.pop())
            assert r.status_code == 200, r.text

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(paths) / (time.perf_counter() - started)


async def chat_turns(api: httpx.AsyncClient, agent_id: str, turns: int) -> tuple[list[float], list[float]]:
    totals: list[float] = []
    overheads: list[float] = []
    thread_id: str | None = None
    for i in range(turns + 20):
        body: dict[str, Any] = {"message": f"turn {i}", **({"thread_id": thread_id} if thread_id else {})}
        started = time.perf_counter()
        r = await api.post(f"{URL}/{agent_id}/chat", json=body)
        elapsed = time.perf_counter() - started
        assert r.status_code == 200 and r.json()["status"] == "completed", r.text
        thread_id = r.json()["thread_id"] if i % 20 else None  # a fresh thread every 20 turns: history stays short
        if i < 20:
            continue  # warm-up
        model = sum(s["duration_ms"] for s in r.json()["steps"] if s["kind"] == "model") / 1000
        totals.append(elapsed)
        overheads.append(elapsed - model)
    return totals, overheads


async def measure(label: str, database_url: str, args: argparse.Namespace, **env: str) -> None:
    plugins = [p for p in discover() if p.name in ("gateway", "agents")]
    async with running_app(database_url, plugins, **env) as (app, _, tenant):
        async with client(app, tenant["api_key"]) as api:
            ids = []
            for i in range(args.agents):
                r = await api.post(URL, json={"name": f"agent-{i % 10}", "llm_model": "mock-1"})
                assert r.status_code == 201, r.text
                ids.append(r.json()["agent_id"])
            await throughput(api, [f"{URL}/{ids[0]}"] * 200, args.concurrency)  # warm-up
            gets = await throughput(api, [f"{URL}/{ids[i % len(ids)]}" for i in range(args.calls)], args.concurrency)
            lists = await throughput(api, [f"{URL}?limit=20"] * args.calls, args.concurrency)
            named = await throughput(api, [f"{URL}?limit=20&name=agent-3"] * args.calls, args.concurrency)
            print(f"{label}: get {gets:7.0f} req/s   list (20) {lists:7.0f} req/s   list by name {named:7.0f} req/s")
            totals, overheads = await chat_turns(api, ids[0], args.turns)
            print(f"{label}: chat turn (mock-1)          {percentiles(totals)}")
            print(f"{label}: chat turn minus model call  {percentiles(overheads)}")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--turns", type=int, default=300)
    args = parser.parse_args()
    print(f"concurrency {args.concurrency}, {args.agents} agents, {args.calls} calls, {args.turns} chat turns")
    with embedded_server() as server:
        url = await fresh_database(server)
        await measure("direct        ", url, args)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("FAAS_")}
        env.update(
            DATABASE_URL=url,
            FAAS_INTERNAL_SECRET=SECRET,
            FAAS_ADMIN_KEY=ADMIN_KEY,
            FAAS_PLUGINS="gateway",
            FAAS_ACCESS_LOG="off",
            FAAS_JOBS_WORKER="off",
        )
        gateway: subprocess.Popen[bytes] = serve(port, env)
        try:
            await wait_live(f"http://127.0.0.1:{port}")
            remote = {
                "FAAS_GATEWAY_MODE": "remote",
                "FAAS_GATEWAY_URL": f"http://127.0.0.1:{port}",
                "FAAS_INTERNAL_SECRET": SECRET,
            }
            await measure("gateway remote", url, args, **remote)
        finally:
            gateway.terminate()  # the process this script started
            gateway.wait(10)


if __name__ == "__main__":
    asyncio.run(main())
