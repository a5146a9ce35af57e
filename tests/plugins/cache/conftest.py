"""Cache fixtures: the same tests run against each backend (`cache_backend` is postgres or redis) and with the
cache plugin direct and remote (`mode`).

Remote mode runs the postgres backend only (the remote path does not depend on the backend): the app the tests
talk to serves the routes and calls a second app instance (cache direct, under uvicorn on 127.0.0.1, on the same
database) through `RemoteCacheService`. Redis runs at 127.0.0.1:6379; each test writes under its own key prefix
and deletes everything under it after. `cache_app` yields the app, its lifespan state (so service tests call
`state["services"].cache` directly, which is the remote service in remote mode) and the serving instance's URL
(None in direct mode).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from app.main import create_app
from tests.conftest import ADMIN_KEY, INTERNAL_SECRET, asgi_client, make_settings, new_tenant, remote_env, serve_app

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(params=[("direct", "postgres"), ("direct", "redis"), ("remote", "postgres")], ids="-".join)
def variant(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(mode, backend) pairs: every backend direct, and remote mode once."""
    mode, backend = request.param
    return str(mode), str(backend)


@pytest.fixture
def mode(variant: tuple[str, str]) -> str:
    return variant[0]


@pytest.fixture
def cache_backend(variant: tuple[str, str]) -> str:
    return variant[1]


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


CacheApp = tuple[Any, dict[str, Any], str | None]


@pytest.fixture
async def cache_app(
    mode: str, database_url: str, cache_env: dict[str, str], cache_plugins: list[Any]
) -> AsyncIterator[CacheApp]:
    env = {
        "FAAS_PLUGINS": ",".join(p.name for p in cache_plugins),
        "FAAS_INTERNAL_SECRET": INTERNAL_SECRET,
        **cache_env,
    }
    if mode == "direct":
        application = create_app(make_settings(database_url, **env), plugins=cache_plugins)
        async with LifespanManager(application) as manager:
            yield manager.app, application.state.lifespan, None
        return
    async with serve_app(create_app(make_settings(database_url, **env), plugins=cache_plugins)) as url:
        front = create_app(make_settings(database_url, **env, **remote_env(("cache",), url)), plugins=cache_plugins)
        async with LifespanManager(front) as manager:
            yield manager.app, front.state.lifespan, url


@pytest.fixture
def cache(cache_app: CacheApp) -> Any:
    """The cache service as other plugins see it (`services.cache`): direct, or remote in remote mode."""
    return cache_app[1]["services"].cache


@pytest.fixture
async def serving(cache_app: CacheApp) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the instance where the cache runs direct (its metrics live there)."""
    app, _, url = cache_app
    client = asgi_client(app) if url is None else httpx.AsyncClient(base_url=url)
    async with client:
        yield client


@pytest.fixture
async def cache_admin(cache_app: CacheApp) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(cache_app[0], authorization=f"Bearer {ADMIN_KEY}") as c:
        yield c


@pytest.fixture
async def tenants(cache_admin: httpx.AsyncClient) -> list[dict[str, str]]:
    return [await new_tenant(cache_admin), await new_tenant(cache_admin)]


@pytest.fixture
async def clients(cache_app: CacheApp, tenants: list[dict[str, str]]) -> AsyncIterator[list[httpx.AsyncClient]]:
    """One client per tenant (two tenants)."""
    a = asgi_client(cache_app[0], authorization=f"Bearer {tenants[0]['api_key']}")
    b = asgi_client(cache_app[0], authorization=f"Bearer {tenants[1]['api_key']}")
    async with a, b:
        yield [a, b]
