"""PostgreSQL going away under a running server: 503 with Retry-After (never a 500), and back to 200 by itself when
the database returns. Each test runs its own embedded PostgreSQL in a temporary directory, so stopping it touches
nothing else."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from app import migrations
from app.db import plain_url, start_embedded, stop_embedded
from app.main import create_app
from tests.conftest import (
    ADMIN_KEY,
    INTERNAL_SECRET,
    asgi_client,
    captured_logs,
    eventually,
    make_settings,
    new_tenant,
    remote_env,
    serve_app,
)
from tests.harness import bare_plugin
from tests.lifespan import lifespan


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A dedicated embedded PostgreSQL (its data directory and URL), migrated; stopped at the end."""
    data = tmp_path / "own-pg"
    url = start_embedded(data)
    try:
        migrations.upgrade(url)
        yield data, url
    finally:
        stop_embedded(data)


@asynccontextmanager
async def prompts_app(mode: str, url: str, **extra: str) -> AsyncIterator[Any]:
    # Keys answered from memory for a minute: the failing query is the plugin's, not the key lookup.
    env = {"FAAS_INTERNAL_SECRET": INTERNAL_SECRET, "FAAS_AUTH_CACHE_SECONDS": "60", **extra}
    serving = create_app(make_settings(url, FAAS_PLUGINS="prompts", **env))
    if mode == "direct":
        async with lifespan(serving) as m:
            yield m.app
        return
    async with serve_app(serving) as upstream:
        env.update(remote_env(("prompts",), upstream), FAAS_PROMPTS_CLIENT_RETRIES="0")
        async with lifespan(create_app(make_settings(url, FAAS_PLUGINS="prompts", **env))) as m:
            yield m.app


async def test_database_stopped_under_a_running_server_is_503_then_recovers(
    mode: str, own_server: tuple[Path, str]
) -> None:
    data, url = own_server
    async with prompts_app(mode, url) as app:
        async with asgi_client(app, authorization=f"Bearer {ADMIN_KEY}") as admin:
            tenant = await new_tenant(admin)
        async with asgi_client(app, authorization=f"Bearer {tenant['api_key']}") as c:
            assert (await c.get("/api/v1/prompts")).status_code == 200
            await asyncio.to_thread(stop_embedded, data)
            with captured_logs() as lines:
                r = await c.get("/api/v1/prompts")
            assert r.status_code == 503, r.text
            assert r.json()["type"] == "urn:faas:problem:unavailable" and int(r.headers["retry-after"]) >= 1
            assert f"request id {r.headers['x-request-id']}" in r.json()["detail"]
            assert not [line for line in lines if line["level"] == "error"]  # no "unhandled error" trace

            async def ready(status: int) -> None:
                r = await c.get("/health/ready")
                assert r.status_code == status and r.json()["checks"]["database"]["ok"] is (status == 200)

            await eventually(lambda: ready(503))
            await asyncio.to_thread(start_embedded, data)

            async def back() -> None:
                r = await c.get("/api/v1/prompts")
                assert r.status_code == 200, r.text

            await eventually(back)  # the same app: nothing restarted
            await eventually(lambda: ready(200))


async def test_a_connection_lost_under_a_query_is_503(own_server: tuple[Path, str]) -> None:
    from starlette.requests import Request
    from starlette.responses import Response

    from app.plugins import discover
    from app.routing import api_route, json_response

    async def slow(request: Request) -> Response:
        return json_response({"slept": await request.state.db.fetch_val("SELECT pg_sleep(30)::text")})

    plugin = bare_plugin("slow", lambda: [api_route("GET", "/", slow, "Slow", auth="none")])
    data, url = own_server
    app = create_app(make_settings(url, FAAS_PLUGINS="slow"), plugins=[*discover(), plugin])
    async with lifespan(app) as m, asgi_client(m.app) as c:
        call = asyncio.create_task(c.get("/api/v1/slow"))

        async def sleeping() -> None:
            conn = await asyncpg.connect(plain_url(url))
            try:
                n = await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%'")
            finally:
                await conn.close()
            assert n == 1

        await eventually(sleeping)
        await asyncio.to_thread(stop_embedded, data)  # a fast shutdown ends the sleeping query's session
        r: httpx.Response = await call
    assert r.status_code == 503 and r.headers["retry-after"], r.text
    assert r.json()["type"] == "urn:faas:problem:unavailable"
