"""Side-by-side benchmark: a minimal upstream alone, a bare pass-through, this gateway and LiteLLM's proxy in front.

Everything listens on 127.0.0.1. For each target it runs a closed loop at a fixed concurrency for a fixed time
and prints requests/s, p50/p99 latency, the latency added over the upstream alone, the server's CPU time per
request and the resident memory of the server's process tree. The gateway runs with its real per-request work:
API-key lookup (per-replica cache) and the tenant limit UPSERT on PostgreSQL (embedded), and the usage ledger;
the time those two statements take is measured on their own too. LiteLLM runs without a database (no virtual
keys, no limits, no spend log), so it does strictly less work per request than the gateway. The bare pass-through
(benchmarks/bare_passthrough.py: Starlette and aiohttp's client, nothing else) is the floor a Python gateway can
reach; the run prints the gateway's throughput as a share of it and as a multiple of LiteLLM's.

Added latency is a target's latency minus the upstream's own, measured by the same client at the same
concurrency. At concurrency 20 on a saturated machine that difference is mostly queueing (latency ≈ 20 /
throughput), so the run also measures one request at a time, where the difference is the proxy's own cost.

LiteLLM must be installed in its own venv outside the repository, pinned to 1.82.6:

    python3 -m venv /tmp/litellm-venv && /tmp/litellm-venv/bin/pip install "litellm[proxy]==1.82.6"
    .venv/bin/python benchmarks/gateway_bench.py [--seconds 10] [--concurrency 20] [--litellm /tmp/litellm-venv]
        [--workers 1] [--py-spy /path/to/py-spy]

`--workers 2` runs the gateway with two uvicorn workers (the others keep one). `--py-spy` (py-spy installed anywhere,
for example `python3 -m venv /tmp/spy && /tmp/spy/bin/pip install py-spy`) records the gateway under load after the
measurements and prints the functions where it spends its time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import psutil

ROOT = Path(__file__).resolve().parent.parent
ADMIN_KEY = "bench-admin-key-0123456789"
PAYLOAD = {"model": "bench", "messages": [{"role": "user", "content": "ping"}], "max_tokens": 16}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def process(cmd: list[str], env: dict[str, str] | None = None, log: Path | None = None) -> Any:
    out = open(log, "wb") if log else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        if log:
            out.close()  # type: ignore[union-attr]


async def wait_ready(url: str, wait: float, headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + wait
    async with aiohttp.ClientSession() as s:
        while time.monotonic() < deadline:
            try:
                async with s.post(url, json=PAYLOAD, headers=headers) as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.3)
    raise SystemExit(f"{url} did not become ready in {wait:.0f}s")


async def load(url: str, headers: dict[str, str], *, seconds: float, concurrency: int, pid: int) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    done = 0
    body = json.dumps(PAYLOAD).encode()
    hdrs = {"content-type": "application/json", **headers}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as s:

        async def worker(until: float, record: bool) -> None:
            nonlocal errors, done
            while time.perf_counter() < until:
                t0 = time.perf_counter()
                async with s.post(url, data=body, headers=hdrs) as r:
                    await r.read()
                    ok = r.status == 200
                if record:
                    done += 1
                    if ok:
                        latencies.append(time.perf_counter() - t0)
                    else:
                        errors += 1

        warm = time.perf_counter() + min(2.0, seconds / 3)
        await asyncio.gather(*(worker(warm, False) for _ in range(concurrency)))
        cpu0, start = cpu_seconds(pid), time.perf_counter()
        await asyncio.gather(*(worker(start + seconds, True) for _ in range(concurrency)))
        elapsed, cpu = time.perf_counter() - start, cpu_seconds(pid) - cpu0
    latencies.sort()
    n = len(latencies)
    return {
        "rps": n / elapsed,
        "p50": latencies[n // 2] * 1000 if n else float("nan"),
        "p99": latencies[min(n - 1, int(n * 0.99))] * 1000 if n else float("nan"),
        "errors": errors,
        "cpu_ms": cpu / done * 1000 if done else float("nan"),
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children (LiteLLM's proxy forks a worker)."""
    proc = psutil.Process(pid)
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
    return total


def rss_mb(pid: int) -> float:
    proc = psutil.Process(pid)
    total = proc.memory_info().rss
    for child in proc.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return float(total) / 2**20


async def db_cost(database_url: str, api_key: str, n: int = 500) -> float:
    """Mean ms of the two statements every gateway request runs: key lookup and the limit UPSERT."""
    sys.path.insert(0, str(ROOT))
    from app.db import Database
    from app.tenancy import TenantStore
    from plugins.gateway.store import GatewayStore

    db = Database(database_url)
    await db.connect()
    try:
        tenants, store = TenantStore(db), GatewayStore(db)
        found = await tenants.lookup_key(api_key)
        assert found is not None
        t0 = time.perf_counter()
        for _ in range(n):
            await tenants.lookup_key(api_key)
            await store.admit(tenant_id=found.tenant_id, model="bench", tokens=30, cost=0.0)
        return (time.perf_counter() - t0) / n * 1000
    finally:
        await db.disconnect()


async def profile(py_spy: str, url: str, headers: dict[str, str], pid: int, work: Path, seconds: float) -> None:
    """Sample the gateway under load with py-spy and print where the time goes: by the function on top of the stack
    (self) and by every function on it (total), as shares of all samples."""
    out = work / "profile.txt"
    record = ["record", "--pid", str(pid), "--subprocesses", "--nonblocking", "--rate", "250"]
    spy = await asyncio.create_subprocess_exec(
        py_spy,
        *record,
        *("--duration", str(int(seconds)), "--format", "raw", "--output", str(out)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    await asyncio.sleep(1.0)
    await load(url, headers, seconds=seconds - 1, concurrency=20, pid=pid)
    await asyncio.wait_for(spy.wait(), 60)
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    files: Counter[str] = Counter()
    samples = 0
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        # "function (path/file.py:line)" frames after the process and thread frames py-spy puts first.
        frames = [f for f in stack.split(";") if f.endswith(")") and ".py:" in f]
        if not frames:
            continue
        n = int(count)
        samples += n
        names = [f"{f.split(' (')[0]} ({f.rsplit('/', 1)[-1].split(':')[0]})" for f in frames]
        where = [_area(f.split(" (")[-1]) for f in frames]
        own[names[-1]] += n
        for name in set(names):
            total[name] += n
        for area in set(where):
            files[area] += n
    print(f"\nprofile of the gateway under load ({samples} samples while busy), self time:")
    for name, n in own.most_common(20):
        print(f"  {100 * n / samples:5.1f}%  {name}")
    print("total time by package (the package's code or what it calls):")
    for area, n in files.most_common(16):
        print(f"  {100 * n / samples:5.1f}%  {area}")
    print("total time by function (below the server's own frames):")
    for name, n in [item for item in total.most_common(80) if item[1] < 0.45 * samples][:25]:
        print(f"  {100 * n / samples:5.1f}%  {name}")


def _area(path: str) -> str:
    """The package a frame's file belongs to: `asyncpg`, `starlette`, `plugins/gateway`..."""
    parts = path.split(":")[0].split("/")
    if "site-packages" in parts:
        return parts[parts.index("site-packages") + 1]
    for root in ("plugins", "app"):
        if root in parts:
            i = parts.index(root)
            return "/".join(parts[i : i + (2 if root == "plugins" else 1)])
    return parts[-2] if len(parts) > 1 else path


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--concurrency", type=int, default=20)
    ap.add_argument("--litellm", default="/tmp/litellm-venv", help="venv with litellm[proxy]==1.82.6 ('' to skip)")
    ap.add_argument("--workers", type=int, default=1, help="uvicorn workers of the gateway")
    ap.add_argument("--py-spy", default="", help="py-spy executable: profile the gateway under load at the end")
    ap.add_argument("--profile-out", default="", help="keep py-spy's raw stacks in this file (flamegraph input)")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from app import migrations
    from app.db import start_embedded

    results: dict[str, dict[str, float]] = {}
    load_before = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="gw-bench-") as tmp:
        work = Path(tmp)
        up_port = free_port()
        up = stack.enter_context(process([sys.executable, "benchmarks/bench_upstream.py", str(up_port)]))
        up_url = f"http://127.0.0.1:{up_port}/v1/chat/completions"
        await wait_ready(up_url, 20)

        db_url = start_embedded(work)
        await asyncio.to_thread(migrations.upgrade, db_url)
        config = work / "gateway.json"
        config.write_text(
            json.dumps(
                {
                    "models": {
                        "bench": {
                            "deployments": [
                                {
                                    "provider": "openai",
                                    "model": "bench-upstream",
                                    "base_url": f"http://127.0.0.1:{up_port}/v1",
                                }
                            ]
                        }
                    }
                }
            )
        )
        gw_port = free_port()
        gw_env = {
            "DATABASE_URL": db_url,
            "FAAS_ADMIN_KEY": ADMIN_KEY,
            "FAAS_GATEWAY_CONFIG": str(config),
            "FAAS_ACCESS_LOG": "off",
            "FAAS_LOG_LEVEL": "warning",
            "FAAS_PLUGINS": "gateway",
        }
        gw = stack.enter_context(
            process(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "app.main:create_app",
                    "--factory",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(gw_port),
                    "--log-level",
                    "warning",
                    "--no-access-log",
                    "--workers",
                    str(args.workers),
                ],
                gw_env,
                work / "gateway.log",
            )
        )
        async with aiohttp.ClientSession() as s:
            for _ in range(100):
                try:
                    async with s.post(
                        f"http://127.0.0.1:{gw_port}/api/v1/admin/tenants",
                        json={"name": "bench"},
                        headers={"authorization": f"Bearer {ADMIN_KEY}"},
                    ) as r:
                        tenant = await r.json()
                        break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.2)
            else:
                raise SystemExit(f"the gateway did not start; see {work / 'gateway.log'}")
        gw_headers = {"authorization": f"Bearer {tenant['api_key']}"}
        gw_url = f"http://127.0.0.1:{gw_port}/v1/chat/completions"
        await wait_ready(gw_url, 30, gw_headers)

        bare_port = free_port()
        bare = stack.enter_context(
            process([sys.executable, "benchmarks/bare_passthrough.py", str(bare_port), up_url], log=work / "bare.log")
        )
        bare_url = f"http://127.0.0.1:{bare_port}/v1/chat/completions"
        await wait_ready(bare_url, 20)

        targets: list[tuple[str, str, dict[str, str], int]] = [
            ("upstream alone", up_url, {}, up.pid),
            ("bare pass-through", bare_url, {}, bare.pid),
            ("this gateway", gw_url, gw_headers, gw.pid),
        ]
        litellm = Path(args.litellm) / "bin" / "litellm" if args.litellm else None
        if litellm is not None and litellm.exists():
            ll_port = free_port()
            ll_config = work / "litellm.yaml"
            ll_config.write_text(
                "model_list:\n  - model_name: bench\n    litellm_params:\n      model: openai/bench-upstream\n"
                f"      api_base: http://127.0.0.1:{up_port}/v1\n      api_key: sk-bench\n"
                "litellm_settings:\n  telemetry: false\n"
            )
            ll_env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False"}
            ll = stack.enter_context(
                process(
                    [
                        str(litellm),
                        "--config",
                        str(ll_config),
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(ll_port),
                        "--num_workers",
                        "1",
                    ],
                    ll_env,
                    work / "litellm.log",
                )
            )
            ll_url = f"http://127.0.0.1:{ll_port}/v1/chat/completions"
            await wait_ready(ll_url, 120)
            targets.append(("LiteLLM 1.82.6 proxy", ll_url, {}, ll.pid))
        else:
            print(f"(LiteLLM skipped: no {litellm or 'venv given'})")

        for name, url, headers, pid in targets:
            measured = await load(url, headers, seconds=args.seconds, concurrency=args.concurrency, pid=pid)
            measured["rss"] = rss_mb(pid)
            # Added latency without queueing: one request at a time (at concurrency 20 on a saturated 2-core
            # machine, latency is 20 / throughput by Little's law, whatever the per-request cost).
            single = await load(url, headers, seconds=max(3.0, args.seconds / 3), concurrency=1, pid=pid)
            measured["p50_1"], measured["p99_1"] = single["p50"], single["p99"]
            results[name] = measured
        per_request_db = await db_cost(db_url, tenant["api_key"])
        if args.py_spy:
            await profile(args.py_spy, gw_url, gw_headers, gw.pid, work, max(6.0, args.seconds))
            if args.profile_out:
                shutil.copyfile(work / "profile.txt", args.profile_out)

    base, base99 = results["upstream alone"]["p50"], results["upstream alone"]["p99"]
    cores = os.cpu_count()
    workers = f"gateway {args.workers} worker{'s' if args.workers > 1 else ''}, the others 1"
    print(f"\nconcurrency {args.concurrency}, {args.seconds:.0f} s per target, {workers}, loopback, {cores} cores")
    print(f"load average before the run: {load_before}")
    cols = ("req/s", "p50 ms", "p99 ms", "+p50 ms", "+p99 ms", "CPU ms/r", "RSS MB")
    print(f"{'target':24} " + " ".join(f"{c:>8}" for c in cols) + f" {'errors':>7}")
    for name, row in results.items():
        added = "" if name == "upstream alone" else f"{row['p50'] - base:8.2f} {row['p99'] - base99:8.2f}"
        print(
            f"{name:24} {row['rps']:8.0f} {row['p50']:8.2f} {row['p99']:8.2f} {added:>17} {row['cpu_ms']:8.3f}"
            f" {row['rss']:8.0f} {row['errors']:7.0f}"
        )
    b1, b99 = results["upstream alone"]["p50_1"], results["upstream alone"]["p99_1"]
    print("\none request at a time (no queueing: the added latency is the proxy's own cost):")
    print(f"{'target':24} {'p50 ms':>8} {'p99 ms':>8} {'+p50 ms':>8} {'+p99 ms':>8}")
    for name, row in results.items():
        added = "" if name == "upstream alone" else f"{row['p50_1'] - b1:8.2f} {row['p99_1'] - b99:8.2f}"
        print(f"{name:24} {row['p50_1']:8.2f} {row['p99_1']:8.2f} {added:>17}")
    print(
        "\nAdded latency = the target's latency percentile minus the upstream's, same client, same concurrency. At\n"
        f"concurrency {args.concurrency} every process shares {cores} cores, so latency there is mostly queueing "
        "(concurrency / throughput);\nthe one-at-a-time table is the per-request cost a caller sees."
    )
    share = results["this gateway"]["rps"] / results["bare pass-through"]["rps"]
    print(f"gateway / bare pass-through requests per second: {100 * share:.0f}%")
    if "LiteLLM 1.82.6 proxy" in results:
        ratio = results["this gateway"]["rps"] / results["LiteLLM 1.82.6 proxy"]["rps"]
        print(f"gateway / LiteLLM requests per second: {ratio:.1f}x")
        print(
            "Fairness: the gateway authenticates a tenant key, runs the tenant-limit UPSERT on PostgreSQL and writes\n"
            "the usage ledger on every request; LiteLLM runs with no database (no keys, limits or spend logs)."
        )
    print(f"PostgreSQL work per gateway request (key lookup + limit UPSERT, sequential): {per_request_db:.2f} ms")


if __name__ == "__main__":
    asyncio.run(main())
