"""Cache fixtures: the same tests run against each backend (`cache_backend` is postgres or redis).

Redis runs at 127.0.0.1:6379; each test writes under its own key prefix and deletes everything under it after.
`cache_app` yields the app and its lifespan state, so service tests call `state["services"].cache` directly.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from app.main import create_app
from tests.conftest import ADMIN_KEY, asgi_client, make_settings, new_tenant

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(params=["postgres", "redis"])
def cache_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A key prefix no other test uses; every key under it is deleted afterwards."""
    import redis.asyncio as aioredis

    prefix = f"test:{secrets.token_hex(6)}:"
    yield prefix
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        keys = [k async for k in client.scan_iter(match=prefix + "*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
def cache_env(cache_backend: str, redis_prefix: str) -> dict[str, str]:
    """Environment for the backend under test (a module may extend it by overriding this fixture)."""
    if cache_backend == "redis":
        return {"REDIS_URL": REDIS_URL, "FAAS_CACHE_REDIS_PREFIX": redis_prefix}
    return {}


@pytest.fixture
def cache_plugins() -> list[Any]:
    """The plugins the app mounts: cache alone (a module that needs the gateway overrides this)."""
    from plugins.cache import plugin

    return [plugin]


@pytest.fixture
async def cache_app(
    database_url: str, cache_env: dict[str, str], cache_plugins: list[Any]
) -> AsyncIterator[tuple[Any, dict[str, Any]]]:
    names = ",".join(p.name for p in cache_plugins)
    application = create_app(make_settings(database_url, FAAS_PLUGINS=names, **cache_env), plugins=cache_plugins)
    async with LifespanManager(application) as manager:
        yield manager.app, application.state.lifespan


@pytest.fixture
def cache(cache_app: tuple[Any, dict[str, Any]]) -> Any:
    """The cache service as other plugins see it (`services.cache`)."""
    return cache_app[1]["services"].cache


@pytest.fixture
async def cache_admin(cache_app: tuple[Any, dict[str, Any]]) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(cache_app[0], authorization=f"Bearer {ADMIN_KEY}") as c:
        yield c


@pytest.fixture
async def tenants(cache_admin: httpx.AsyncClient) -> list[dict[str, str]]:
    return [await new_tenant(cache_admin), await new_tenant(cache_admin)]


@pytest.fixture
async def clients(
    cache_app: tuple[Any, dict[str, Any]], tenants: list[dict[str, str]]
) -> AsyncIterator[list[httpx.AsyncClient]]:
    """One client per tenant (two tenants)."""
    a = asgi_client(cache_app[0], authorization=f"Bearer {tenants[0]['api_key']}")
    b = asgi_client(cache_app[0], authorization=f"Bearer {tenants[1]['api_key']}")
    async with a, b:
        yield [a, b]
