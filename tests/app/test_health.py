"""Liveness and readiness: what the public readiness report may say, and what it costs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx

from app.db import plain_url
from app.main import create_app
from app.plugin_kit import LocalDescription, PluginInfo, PluginService, Readiness
from app.plugins import Plugin, PluginContext, ServiceKey, discover
from tests.conftest import asgi_client, make_settings
from tests.lifespan import lifespan

PUBLIC_KEYS = {"ok", "mode", "breaker", "status", "error", "latency_ms"}


async def test_ready_says_nothing_an_outsider_should_not_know(
    api: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    # Use the gateway once, so that its per-deployment breakers exist (their ids are the operator's).
    r = await api.post(
        "/api/v1/gateway/chat", json={"model": "mock-1", "messages": [{"role": "user", "content": "hi"}]}
    )
    assert r.status_code == 200, r.text
    r = await client.get("/health/ready")
    assert r.status_code == 200, r.text
    for name, check in r.json()["checks"]["plugins"].items():
        assert set(check) <= PUBLIC_KEYS, (name, check)
    assert "mock" not in r.text


async def _sql(url: str, sql: str) -> Any:
    conn = await asyncpg.connect(plain_url(url))
    try:
        return await (conn.execute(sql) if ";" in sql else conn.fetchval(sql))
    finally:
        await conn.close()


async def test_a_burst_of_ready_calls_costs_the_database_one_check(database_url: str) -> None:
    """/health/ready needs no key: however many callers, a replica checks the database at most once a second."""
    # Count every read of the schema version where it happens: alembic_version becomes a view that bumps a
    # sequence per read (a sequence moves at once, outside transactions, unlike the statistics views).
    await _sql(
        database_url,
        "ALTER TABLE alembic_version RENAME TO alembic_version_stored; CREATE SEQUENCE reads; "
        "CREATE VIEW alembic_version AS SELECT version_num FROM alembic_version_stored WHERE nextval('reads') > 0",
    )
    rows = await _sql(database_url, "SELECT count(*) FROM alembic_version_stored")  # a row per migration branch
    async with lifespan(create_app(make_settings(database_url))) as m, asgi_client(m.app) as c:
        before = await _sql(database_url, "SELECT last_value FROM reads")
        answers = await asyncio.gather(*(c.get("/health/ready") for _ in range(200)))
        reads = (await _sql(database_url, "SELECT last_value FROM reads") - before) / rows
    assert {r.status_code for r in answers} == {200}
    assert 1 <= reads <= 2, f"{reads} reads of the schema version for 200 readiness calls"


def _unready_plugin() -> Plugin[PluginService]:
    """A plugin that runs in-process and says it cannot serve."""

    class Unready:
        def __init__(self, about: LocalDescription) -> None:
            self._about = about

        async def describe(self) -> PluginInfo:
            return self._about.info()

        async def ready(self) -> Readiness:
            return {"ok": False, "error": "WarmingUp"}

    @asynccontextmanager
    async def open_direct(ctx: PluginContext) -> AsyncIterator[Unready]:
        yield Unready(LocalDescription(ctx, ()))

    return Plugin(key=ServiceKey("unready"), direct=open_direct)


async def test_an_in_process_plugin_that_is_not_ready_makes_the_process_unready(database_url: str) -> None:
    settings = make_settings(database_url, FAAS_PLUGINS="prompts,unready")
    async with lifespan(create_app(settings, plugins=[*discover(), _unready_plugin()])) as m:
        async with asgi_client(m.app) as c:
            r = await c.get("/health/ready")
    assert r.status_code == 503, r.text
    body = r.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["plugins"]["unready"] == {"ok": False, "mode": "direct", "error": "WarmingUp"}
    assert body["checks"]["plugins"]["prompts"]["ok"] is True
