"""Remote-mode overhead and breaker fail-fast time, on loopback.

Starts an embedded PostgreSQL, then two `faas serve` processes: U serves every plugin directly, F runs rag remote
against U. One small call (`GET /api/v1/rag/-/info`, tenant key auth) is timed sequentially against U (direct) and
against F (F authenticates, signs, calls U, U verifies and answers), and p50/p99 printed for both. Then a
ServiceHTTPClient whose breaker was opened by a 503 upstream is called repeatedly: time per refused call, and the
number of requests the upstream saw meanwhile (must be 0). Last, what a signed call costs in-process: signing one
try, and remembering its nonce on the receiving side (in memory, or in Redis when REDIS_URL is set, as the servers
above then do too).

Run: .venv/bin/python benchmarks/remote_overhead.py [--calls 2000]   (REDIS_URL=redis://127.0.0.1:6379/0 for Redis)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from app import migrations
from app.breaker import CircuitOpen
from app.db import Database, start_embedded
from app.http_client import ServiceHTTPClient
from app.http_transport import pooled_transport
from app.replay import MemoryReplayGuard, RedisReplayGuard, ReplayGuard
from app.settings import ClientSettings
from app.signing import new_nonce, sign
from app.tenancy import TenantStore

SECRET = "bench-internal-secret-0123456789"
FAAS = str(Path(sys.executable).with_name("faas"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def new_key(url: str) -> str:
    db = Database(url, min_size=1, max_size=1)
    await db.connect()
    try:
        _, _, secret = await TenantStore(db).insert_tenant(name=f"bench-{os.getpid()}-{time.time_ns()}")
    finally:
        await db.disconnect()
    return secret


def serve(port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [FAAS, "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def wait_live(url: str) -> None:
    async with httpx.AsyncClient() as c:
        for _ in range(300):
            try:
                if (await c.get(url + "/health/live")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


async def time_calls(url: str, key: str, calls: int) -> list[float]:
    out: list[float] = []
    async with httpx.AsyncClient(transport=pooled_transport(), headers={"authorization": f"Bearer {key}"}) as c:
        for _ in range(200):  # warm-up: pools, caches
            (await c.get(url + "/api/v1/rag/-/info")).raise_for_status()
        for _ in range(calls):
            started = time.perf_counter()
            r = await c.get(url + "/api/v1/rag/-/info")
            out.append(time.perf_counter() - started)
            assert r.status_code == 200, r.text
    return out


async def breaker_fail_fast(calls: int) -> tuple[list[float], int]:
    seen = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal seen
        while await reader.readline() not in (b"", b"\r\n"):
            pass
        seen += 1
        writer.write(b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    client = ServiceHTTPClient("bench", url, options=ClientSettings(retries=0, breaker_failures=5, breaker_reset=60))
    for _ in range(5):
        await client.get("/x")
    assert client.breaker.state == "open"
    before = seen
    times: list[float] = []
    for _ in range(calls):
        started = time.perf_counter()
        try:
            await client.get("/x")
        except CircuitOpen:
            pass
        times.append(time.perf_counter() - started)
    await client.aclose()
    server.close()
    return times, seen - before


def signing_cost(n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        sign(
            SECRET,
            method="GET",
            target="/api/v1/rag/-/info",
            host="127.0.0.1:8000",
            tenant="ten_0123456789abcdef",
            request_id="0123456789abcdef01234567",
            body=b"",
            deadline="29999",
        )
    return (time.perf_counter() - started) / n


async def replay_cost(guard: ReplayGuard, n: int) -> float:
    nonces = [new_nonce() for _ in range(n)]
    expires = time.time() + 60
    started = time.perf_counter()
    for nonce in nonces:
        await guard.first_time(nonce, expires)
    elapsed = (time.perf_counter() - started) / n
    await guard.aclose()
    return elapsed


async def main(calls: int, url: str) -> None:
    key = await new_key(url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAAS_")}
    env.update(DATABASE_URL=url, FAAS_INTERNAL_SECRET=SECRET, FAAS_ACCESS_LOG="off", FAAS_LOG_LEVEL="warning")
    up_port, front_port = free_port(), free_port()
    up = serve(up_port, env)
    front = serve(front_port, {**env, "FAAS_RAG_MODE": "remote", "FAAS_RAG_URL": f"http://127.0.0.1:{up_port}"})
    try:
        await wait_live(f"http://127.0.0.1:{up_port}")
        await wait_live(f"http://127.0.0.1:{front_port}")
        direct = await time_calls(f"http://127.0.0.1:{up_port}", key, calls)
        remote = await time_calls(f"http://127.0.0.1:{front_port}", key, calls)
    finally:
        for proc in (front, up):
            proc.terminate()
            proc.wait(10)
    fast, upstream_requests = await breaker_fail_fast(calls * 5)
    ms = 1000.0
    print(f"one small call (GET /api/v1/rag/-/info), {calls} sequential calls each, loopback, 1 worker per server")
    print(f"  direct: p50 {statistics.median(direct) * ms:.3f} ms  p99 {pct(direct, 0.99) * ms:.3f} ms")
    print(f"  remote: p50 {statistics.median(remote) * ms:.3f} ms  p99 {pct(remote, 0.99) * ms:.3f} ms")
    print(
        f"  remote overhead: p50 +{(statistics.median(remote) - statistics.median(direct)) * ms:.3f} ms"
        f"  p99 +{(pct(remote, 0.99) - pct(direct, 0.99)) * ms:.3f} ms"
    )
    redis_url = os.environ.get("REDIS_URL")
    memory = await replay_cost(MemoryReplayGuard(), 20_000)
    shared = await replay_cost(RedisReplayGuard(redis_url, prefix="faas:bench:"), 2_000) if redis_url else None
    print(f"  (replay memory of the servers: {'Redis' if redis_url else 'per replica, in memory'})")
    print(f"breaker open, {len(fast)} calls refused in-process:")
    print(
        f"  fail fast: p50 {statistics.median(fast) * 1e6:.1f} us  p99 {pct(fast, 0.99) * 1e6:.1f} us"
        f"  max {max(fast) * 1e6:.1f} us  upstream requests meanwhile: {upstream_requests}"
    )
    print(f"a signed call, in-process: sign one try {signing_cost(20_000) * 1e6:.1f} us;", end=" ")
    print(f"remember its nonce: memory {memory * 1e6:.1f} us", end="")
    print(f", Redis {shared * 1e6:.1f} us" if shared is not None else "")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="faas-bench-") as tmp:
        database = start_embedded(Path(tmp))
        migrations.upgrade(database)  # alembic runs its own event loop: before ours starts
        asyncio.run(main(args.calls, database))
