"""The usage ledger keeps whatever was acknowledged: a replica killed with SIGKILL right after its answers has
lost no row and left no reservation unsettled; a shutdown lets the write in flight finish; a row the database
rejects is written scrubbed without spoiling its batch; and when the ledger cannot be written the answer is
withheld (503) after a bounded wait, never handed out unrecorded."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
import pytest

from app.db import Database
from plugins.gateway.ledger import Usage, UsageLedger
from plugins.gateway.limits import PolicyCache, PostgresLimiter
from plugins.gateway.store import GatewayStore, UsageEntry
from tests.conftest import ADMIN_KEY, Deployer, eventually
from tests.plugins.gateway.conftest import fake_upstream, same_minute, write_config
from tests.plugins.gateway.test_limits import _policy, _tenant

MSG = [{"role": "user", "content": "hello"}]
FAAS = str(Path(sys.executable).with_name("faas"))


async def _count(conn: asyncpg.Connection, tenant_id: str) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM gateway_usage WHERE tenant_id = $1", tenant_id))


async def _insert_waiting(conn: asyncpg.Connection) -> bool:
    n = await conn.fetchval(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE wait_event_type = 'Lock' AND query LIKE '%INSERT INTO gateway_usage%'"
    )
    return bool(n)


async def _wait_for_blocked_insert(conn: asyncpg.Connection) -> None:
    for _ in range(500):
        if await _insert_waiting(conn):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the ledger's INSERT never waited for the lock")


async def counted(admin: httpx.AsyncClient, tenant_id: str) -> None:
    """Give the tenant a TPM limit, so that each call reserves its tokens (a tenant without limits reserves none)."""
    r = await admin.put(f"/api/v1/gateway/tenants/{tenant_id}/policy", json={"tpm": 10_000_000})
    assert r.status_code == 200, r.text


async def reservations_settled(conn: asyncpg.Connection, tenant_id: str) -> tuple[int, int]:
    """(tokens held in the tenant's current window, tokens its ledger rows used): equal once every reservation
    is settled with real usage (callers keep the test inside one minute)."""
    held = await conn.fetchval("SELECT window_tokens FROM gateway_tenant_limits WHERE tenant_id = $1", tenant_id)
    used = await conn.fetchval(
        "SELECT COALESCE(sum(prompt_tokens + completion_tokens), 0) FROM gateway_usage WHERE tenant_id = $1",
        tenant_id,
    )
    return int(held), int(used)


# ---- kill -9 ---------------------------------------------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(database_url: str, tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`faas serve` (gateway only) on 127.0.0.1, in a process of its own that the test may kill."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAAS_") and k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(
        DATABASE_URL=database_url,
        FAAS_ADMIN_KEY=ADMIN_KEY,
        FAAS_PLUGINS="gateway",
        FAAS_ACCESS_LOG="off",
        FAAS_DATA_DIR=str(tmp_path / "var"),
    )
    port = _free_port()
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [FAAS, "serve", "--host", "127.0.0.1", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                if httpx.get(url + "/health/live", timeout=0.5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "faas serve did not come up"
            time.sleep(0.1)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.kill()  # only the process this fixture started
        proc.wait()
        log.close()


@pytest.mark.slow
async def test_sigkill_after_n_answers_loses_no_row_and_no_settlement(
    served: tuple[str, subprocess.Popen[bytes]], database_url: str
) -> None:
    url, proc = served
    n = 100
    async with httpx.AsyncClient(base_url=url, timeout=30) as c:
        admin = {"authorization": f"Bearer {ADMIN_KEY}"}
        r = await c.post("/api/v1/admin/tenants", json={"name": "kill9"}, headers=admin)
        assert r.status_code == 201, r.text
        tenant = r.json()
        headers = {"authorization": f"Bearer {tenant['api_key']}"}
        # A tpm limit gives the tenant its counter row; 1,000 reserved tokens a call make a leftover obvious.
        put = await c.put(
            f"/api/v1/gateway/tenants/{tenant['tenant_id']}/policy",
            json={"tpm": 10_000_000},
            headers=admin,
        )
        assert put.status_code == 200
        await same_minute(seconds_needed=15)
        body = {"model": "mock-1", "messages": MSG, "max_tokens": 1000}

        async def one() -> int:
            return (await c.post("/v1/chat/completions", json=body, headers=headers)).status_code

        codes: list[int] = []
        for _ in range(n // 10):  # ten at a time: answers share group commits
            codes += await asyncio.gather(*(one() for _ in range(10)))
    assert codes == [200] * n
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    conn = await asyncpg.connect(database_url)
    try:
        assert await _count(conn, tenant["tenant_id"]) == n
        # The daily rollup is written by the same statements: the crash left it equal to the ledger.
        rolled = await conn.fetchval(
            "SELECT sum(requests) FROM gateway_usage_daily WHERE tenant_id = $1", tenant["tenant_id"]
        )
        assert rolled == n
        held, used = await reservations_settled(conn, tenant["tenant_id"])
    finally:
        await conn.close()
    assert held == used and used < n * 1000


# ---- shutdown, rejected rows, errors --------------------------------------------------------------------------


async def test_shutdown_lets_the_write_in_flight_finish(deploy_app: Deployer, database_url: str) -> None:
    locker = await asyncpg.connect(database_url)
    watcher = await asyncpg.connect(database_url)
    try:
        # Served by uvicorn, which lets requests in flight finish before the app shuts down, as in production.
        async with deploy_app(served="loop") as app:
            tid, c = await _tenant(app)
            lock = locker.transaction()
            await lock.start()
            await locker.execute("LOCK TABLE gateway_usage IN ACCESS EXCLUSIVE MODE")
            calls = [
                asyncio.create_task(c.post("/v1/chat/completions", json={"model": "mock-1", "messages": MSG}))
                for _ in range(3)
            ]
            await _wait_for_blocked_insert(watcher)

            async def release() -> None:
                await asyncio.sleep(0.3)
                await lock.rollback()

            releaser = asyncio.create_task(release())
            # Leaving the block shuts the app down (the ledger stops) while its write waits for the lock.
        await releaser
        assert [(await call).status_code for call in calls] == [200, 200, 200]
        await c.aclose()
        assert await _count(watcher, tid) == 3
    finally:
        await locker.close()
        await watcher.close()


def _usage(tenant_id: str, error: str | None, model: str = "m") -> Usage:
    return Usage(
        UsageEntry(
            tenant_id=tenant_id,
            created_at=datetime.now(UTC),
            request_id=None,
            model=model,
            deployment=None,
            provider=None,
            prompt_tokens=1,
            completion_tokens=1,
            cost_usd=0.0,
            latency_ms=1.0,
            cache_hit=False,
            stream=False,
            status=200 if error is None else 502,
            error=error,
        )
    )


async def test_a_rejected_row_is_written_scrubbed_and_its_batch_too(database_url: str) -> None:
    db = Database(database_url)
    await db.connect()
    store = GatewayStore(db)
    ledger = UsageLedger(store, PostgresLimiter(store, PolicyCache(store)))
    ledger.start()
    try:
        errors = (None, "bad \x00 text", None, "lone \udc80 surrogate", None)
        await asyncio.gather(*(ledger.record(_usage("poison", e)) for e in errors))
        await ledger.record(_usage("poison", None, model="after"))
        rows = await db.fetch_all("SELECT model, error FROM gateway_usage WHERE tenant_id = 'poison' ORDER BY id")
    finally:
        await ledger.stop()
        await db.disconnect()
    got = [(r._mapping["model"], r._mapping["error"]) for r in rows]
    assert sorted(got, key=str) == sorted(
        [("m", None)] * 3 + [("m", "bad  text"), ("m", "lone \\udc80 surrogate"), ("after", None)], key=str
    )


async def test_a_provider_error_with_a_nul_does_not_stop_usage_recording(
    deploy_app: Deployer, database_url: str, tmp_path: Path
) -> None:
    with fake_upstream("oa", fail_status=500, fail_message="bad\u0000thing happened") as (_, url):
        config = write_config(
            tmp_path,
            {
                "broken": {"deployments": [{"provider": "openai", "model": "g", "base_url": f"{url}/v1"}]},
                "fine": {"deployments": [{"provider": "mock", "model": "mock-1"}]},
            },
        )
        async with deploy_app(env={"FAAS_GATEWAY_CONFIG": config}) as app:
            tid, c = await _tenant(app)
            failed = await c.post("/v1/chat/completions", json={"model": "broken", "messages": MSG})
            assert failed.status_code == 502
            ok = await c.post("/v1/chat/completions", json={"model": "fine", "messages": MSG})
            assert ok.status_code == 200
            await c.aclose()
            conn = await asyncpg.connect(database_url)
            try:  # both rows committed before their answers: no waiting here
                rows = await conn.fetch("SELECT status, error FROM gateway_usage WHERE tenant_id = $1 ORDER BY id", tid)
            finally:
                await conn.close()
    assert [r["status"] for r in rows] == [502, 200]
    assert "\x00" not in rows[0]["error"] and "badthing" in rows[0]["error"]


async def test_when_the_ledger_cannot_write_the_answer_is_withheld(deploy_app: Deployer, database_url: str) -> None:
    locker = await asyncpg.connect(database_url)
    watcher = await asyncpg.connect(database_url)
    try:
        async with deploy_app(env={"FAAS_GATEWAY_LEDGER_WAIT_SECONDS": "0.5"}) as app:
            tid, c = await _tenant(app)
            await _policy(app, tid, tpm=1_000_000)
            await same_minute(seconds_needed=20)
            lock = locker.transaction()
            await lock.start()
            await locker.execute("LOCK TABLE gateway_usage IN ACCESS EXCLUSIVE MODE")
            body = {"model": "mock-1", "messages": MSG, "max_tokens": 1000}
            first = asyncio.create_task(c.post("/v1/chat/completions", json=body))
            await _wait_for_blocked_insert(watcher)  # the first call's row is in a write that cannot finish
            second = await c.post("/v1/chat/completions", json=body)  # its row waits behind it, then is withdrawn
            answers = [await first, second]
            assert [a.status_code for a in answers] == [503, 503]
            assert all(a.json()["error"]["code"] == "usage_not_recorded" for a in answers)
            assert all(a.headers["retry-after"] for a in answers)
            await lock.rollback()

            async def recorded() -> None:
                statuses = await watcher.fetch("SELECT status FROM gateway_usage WHERE tenant_id = $1", tid)
                # The first row was already being written (it lands as it was); the second is marked withheld.
                assert sorted(r["status"] for r in statuses) == [200, 503]
                held, used = await reservations_settled(watcher, tid)
                assert held == used < 1000

            await eventually(recorded)
            await c.aclose()
    finally:
        await locker.close()
        await watcher.close()
