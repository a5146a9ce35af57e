"""Shared setup for the cache and prompts benchmarks: an embedded PostgreSQL, a migrated database, the app
running in-process with its lifespan, one tenant, and a percentile helper."""

from __future__ import annotations

import secrets
import statistics
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from asgi_lifespan import LifespanManager

from app import migrations
from app.db import plain_url, start_embedded
from app.main import create_app
from app.settings import Settings

ADMIN_KEY = "bench-admin-key-0123456789"


@contextmanager
def embedded_server() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="faas-bench-pg-") as tmp:
        yield start_embedded(Path(tmp))


async def fresh_database(server_url: str) -> str:
    name = "bench_" + secrets.token_hex(4)
    conn = await asyncpg.connect(plain_url(server_url))
    try:
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    url = server_url.replace("/postgres?", f"/{name}?")
    return url


@asynccontextmanager
async def running_app(
    database_url: str, plugins: list[Any], **env: str
) -> AsyncIterator[tuple[Any, dict[str, Any], dict[str, str]]]:
    """The app with `plugins`, its lifespan state, and a tenant (`tenant_id`, `api_key`)."""
    import asyncio

    await asyncio.to_thread(migrations.upgrade, database_url)
    names = ",".join(p.name for p in plugins)
    settings = Settings.from_env(
        {
            "DATABASE_URL": database_url,
            "FAAS_ADMIN_KEY": ADMIN_KEY,
            "FAAS_ACCESS_LOG": "off",
            "FAAS_PLUGINS": names,
            **env,
        }
    )
    application = create_app(settings, plugins=plugins)
    async with LifespanManager(application) as manager:
        async with client(manager.app, ADMIN_KEY) as admin:
            r = await admin.post("/api/v1/admin/tenants", json={"name": "bench-" + secrets.token_hex(3)})
            r.raise_for_status()
        yield manager.app, application.state.lifespan, r.json()


def client(app: Any, key: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="http://bench", headers={"authorization": f"Bearer {key}"})


def percentiles(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return f"p50 {statistics.median(ms):6.3f} ms  p99 {p99:6.3f} ms  (n={len(ms)})"
