"""The usage report reads a daily rollup written with the ledger rows; retention drops old rows, not the totals."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from app.db import Database
from plugins.gateway.store import GatewayStore, UsageEntry
from tests.conftest import Deployer, eventually

MSG = [{"role": "user", "content": "hello"}]

_LEDGER = """
SELECT CAST(created_at AT TIME ZONE 'UTC' AS date) AS day, model, count(*) AS requests,
    count(*) FILTER (WHERE status >= 400) AS errors, count(*) FILTER (WHERE cache_hit) AS cache_hits,
    sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens, sum(cost_usd) AS cost_usd,
    avg(latency_ms) AS avg_latency_ms
FROM gateway_usage WHERE tenant_id = $1 GROUP BY 1, 2 ORDER BY 1, 2
"""


async def _report(c: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    """Every row of the tenant's usage report, a row per page (so the cursor is exercised too)."""
    rows: list[dict[str, Any]] = []
    query = {"limit": 1, **params}
    while True:
        page = await c.get("/api/v1/gateway/usage", params=query)
        assert page.status_code == 200, page.text
        rows += page.json()["data"]
        if page.json()["next_cursor"] is None:
            return rows
        query["cursor"] = page.json()["next_cursor"]


def _same(report: list[dict[str, Any]], ledger: list[asyncpg.Record]) -> None:
    assert [(r["day"], r["model"]) for r in report] == [(str(x["day"]), x["model"]) for x in ledger]
    for r, x in zip(report, ledger, strict=True):
        for k in ("requests", "errors", "cache_hits", "prompt_tokens", "completion_tokens"):
            assert r[k] == x[k], k
        assert r["cost_usd"] == pytest.approx(x["cost_usd"]) and r["avg_latency_ms"] == pytest.approx(
            x["avg_latency_ms"]
        )


async def test_the_report_equals_the_ledger_after_concurrent_calls(
    deploy_app: Deployer, database_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "g.json"
    priced = {"provider": "mock", "model": "mock-1", "input_cost_per_mtok": 3, "output_cost_per_mtok": 7}
    config.write_text(json.dumps({"models": {"priced": {"deployments": [priced]}, "plain": {"deployments": [priced]}}}))
    async with (
        deploy_app(env={"FAAS_GATEWAY_CONFIG": str(config)}) as one,
        deploy_app(env={"FAAS_GATEWAY_CONFIG": str(config)}) as two,
    ):
        tenant, c1 = await one.api()
        c2 = two.client(tenant.api_key)
        calls = [
            c.post("/v1/chat/completions", json={"model": m, "messages": MSG, "max_tokens": 5})
            for _ in range(40)
            for c in (c1, c2)
            for m in ("priced", "plain")
        ]
        assert {r.status_code for r in await asyncio.gather(*calls)} == {200}
        conn = await asyncpg.connect(database_url)
        try:
            ledger = await conn.fetch(_LEDGER, tenant.tenant_id)
        finally:
            await conn.close()
        assert sum(x["requests"] for x in ledger) == 160
        _same(await _report(c1), ledger)
        _same(await _report(c2), ledger)


async def _old_rows(database_url: str, tenant_id: str, days_ago: int, n: int) -> None:
    db = Database(database_url)
    await db.connect()
    try:
        at = datetime.now(UTC) - timedelta(days=days_ago)
        entry = UsageEntry(
            tenant_id=tenant_id,
            created_at=at,
            request_id=None,
            model="old-model",
            deployment=None,
            provider=None,
            prompt_tokens=10,
            completion_tokens=5,
            cost_usd=0.5,
            latency_ms=20.0,
            cache_hit=False,
            stream=False,
            status=200,
            error=None,
        )
        await GatewayStore(db).insert_usage([entry] * n)
    finally:
        await db.disconnect()


async def test_retention_drops_old_ledger_rows_and_keeps_their_daily_totals(
    deploy_app: Deployer, database_url: str
) -> None:
    async with deploy_app() as app:
        tenant, c = await app.api()
    # 25,000 rows from 100 days ago (more than one deletion batch) and 3 from 10 days ago, written by the store.
    await _old_rows(database_url, tenant.tenant_id, 100, 25_000)
    await _old_rows(database_url, tenant.tenant_id, 10, 3)
    since = (datetime.now(UTC) - timedelta(days=120)).date().isoformat()
    async with deploy_app(env={"FAAS_GATEWAY_USAGE_RETENTION_DAYS": "30"}) as app:
        c = app.client(tenant.api_key)
        conn = await asyncpg.connect(database_url)
        try:

            async def expired() -> None:
                counts = await conn.fetchval(
                    "SELECT count(*) FROM gateway_usage WHERE tenant_id = $1", tenant.tenant_id
                )
                assert counts == 3

            await eventually(expired, within=30.0)
        finally:
            await conn.close()
        report = await _report(c, since=since)
        assert [(r["model"], r["requests"], r["prompt_tokens"]) for r in report] == [
            ("old-model", 25_000, 250_000),
            ("old-model", 3, 30),
        ]
        assert report[0]["cost_usd"] == pytest.approx(12_500.0)
