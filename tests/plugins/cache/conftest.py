"""Cache fixtures: the same tests run against each backend (`cache_backend`: postgres or redis) and with the cache
plugin direct and remote, through the one harness (tests/harness.py).

Remote mode runs the postgres backend only (the remote path does not depend on the backend). Redis runs at
127.0.0.1:6379; each test writes under its own key prefix and deletes everything under it after. `cache` is the
service as other plugins see it (`services.get(CACHE)`: the remote implementation in remote mode).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from plugins.cache.interface import CACHE, CacheService
from tests.harness import Deployment, Mode

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(params=[("direct", "postgres"), ("direct", "redis"), ("remote", "postgres")], ids="-".join)
def variant(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(mode, backend) pairs: every backend direct, and remote mode once."""
    mode, backend = request.param
    return str(mode), str(backend)


@pytest.fixture
def mode(variant: tuple[str, str]) -> Mode:
    return "remote" if variant[0] == "remote" else "direct"


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
def deploy_plugins() -> tuple[str, ...]:
    """The cache alone (a module that needs the gateway overrides this)."""
    return ("cache",)


@pytest.fixture
def deploy_remote() -> tuple[str, ...]:
    return ("cache",)


@pytest.fixture
def deploy_env(cache_backend: str, redis_prefix: str) -> dict[str, str]:
    if cache_backend == "redis":
        return {"REDIS_URL": REDIS_URL, "FAAS_CACHE_REDIS_PREFIX": redis_prefix}
    return {}


@pytest.fixture
def cache(deployment: Deployment) -> CacheService:
    return deployment.service(CACHE)


@pytest.fixture
async def serving(deployment: Deployment) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app where the cache runs direct (its metrics live there)."""
    if deployment.serving_url is None:
        yield deployment.client()
        return
    async with httpx.AsyncClient(base_url=deployment.serving_url) as client:
        yield client


@pytest.fixture
async def tenants(deployment: Deployment) -> list[dict[str, Any]]:
    return [(await deployment.tenant()).__dict__ for _ in range(2)]


@pytest.fixture
def clients(deployment: Deployment, tenants: list[dict[str, Any]]) -> list[httpx.AsyncClient]:
    """One client per tenant (two tenants)."""
    return [deployment.client(t["api_key"]) for t in tenants]
