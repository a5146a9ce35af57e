"""The usage ledger keeps acknowledged usage: through a shutdown in the middle of a flush, and past a row the
database rejects (a provider's error text with a NUL character)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from app.db import Database
from plugins.gateway.ledger import UsageLedger
from plugins.gateway.limits import PostgresLimiter
from plugins.gateway.store import GatewayStore, UsageEntry
from tests.conftest import Deployer
from tests.plugins.gateway.conftest import fake_upstream, write_config
from tests.plugins.gateway.test_limits import _tenant

MSG = [{"role": "user", "content": "hello"}]


async def _count(conn: asyncpg.Connection, tenant_id: str) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM gateway_usage WHERE tenant_id = $1", tenant_id))


async def _insert_waiting(conn: asyncpg.Connection) -> bool:
    n = await conn.fetchval(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE wait_event_type = 'Lock' AND query LIKE '%INSERT INTO gateway_usage%'"
    )
    return bool(n)


async def test_shutdown_during_a_flush_keeps_every_entry(deploy_app: Deployer, database_url: str) -> None:
    locker = await asyncpg.connect(database_url)
    watcher = await asyncpg.connect(database_url)
    try:
        async with deploy_app() as app:
            tid, c = await _tenant(app)
            lock = locker.transaction()
            await lock.start()
            await locker.execute("LOCK TABLE gateway_usage IN ACCESS EXCLUSIVE MODE")
            for _ in range(3):
                assert (
                    await c.post("/v1/chat/completions", json={"model": "mock-1", "messages": MSG})
                ).status_code == 200
            await c.aclose()
            for _ in range(200):  # until the ledger's INSERT waits for the lock
                if await _insert_waiting(watcher):
                    break
                await asyncio.sleep(0.02)
            assert await _insert_waiting(watcher)

            async def release() -> None:
                await asyncio.sleep(0.3)
                await lock.rollback()

            releaser = asyncio.create_task(release())
            # Leaving the block shuts the app down (the ledger stops) while its flush waits for the lock.
        await releaser
        assert await _count(watcher, tid) == 3
    finally:
        await locker.close()
        await watcher.close()


def _entry(tenant_id: str, error: str | None) -> UsageEntry:
    return UsageEntry(
        tenant_id=tenant_id,
        created_at=datetime.now(UTC),
        request_id=None,
        model="m",
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


async def test_a_rejected_row_is_dropped_and_the_rest_of_the_batch_written(database_url: str) -> None:
    db = Database(database_url)
    await db.connect()
    try:
        store = GatewayStore(db)
        ledger = UsageLedger(store, PostgresLimiter(store))
        for error in (None, "bad \x00 text", None, "lone \udc80 surrogate", None):
            ledger.record(_entry("poison", error))
        await ledger.flush()
        ledger.record(_entry("poison", None))
        await ledger.flush()
        rows = await db.fetch_all("SELECT error FROM gateway_usage WHERE tenant_id = 'poison'")
    finally:
        await db.disconnect()
    assert [r._mapping["error"] for r in rows] == [None] * 4


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
            await asyncio.sleep(0.2)
            ok = await c.post("/v1/chat/completions", json={"model": "fine", "messages": MSG})
            assert ok.status_code == 200
            await c.aclose()
            await asyncio.sleep(0.3)
            conn = await asyncpg.connect(database_url)
            try:
                rows = await conn.fetch("SELECT status, error FROM gateway_usage WHERE tenant_id = $1 ORDER BY id", tid)
            finally:
                await conn.close()
    assert [r["status"] for r in rows] == [502, 200]
    assert "\x00" not in rows[0]["error"] and "badthing" in rows[0]["error"]
