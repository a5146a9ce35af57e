"""Prompts fixtures: an app mounting the prompts plugin alone, and clients for two tenants."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from app.main import create_app
from tests.conftest import ADMIN_KEY, asgi_client, make_settings, new_tenant


@pytest.fixture
async def prompts_app(database_url: str) -> AsyncIterator[Any]:
    from plugins.prompts import plugin

    application = create_app(make_settings(database_url, FAAS_PLUGINS="prompts"), plugins=[plugin])
    async with LifespanManager(application) as manager:
        yield manager.app


@pytest.fixture
async def clients(prompts_app: Any) -> AsyncIterator[list[httpx.AsyncClient]]:
    """Clients of two different tenants."""
    async with asgi_client(prompts_app, authorization=f"Bearer {ADMIN_KEY}") as admin:
        keys = [(await new_tenant(admin))["api_key"] for _ in range(2)]
    a = asgi_client(prompts_app, authorization=f"Bearer {keys[0]}")
    b = asgi_client(prompts_app, authorization=f"Bearer {keys[1]}")
    async with a, b:
        yield [a, b]


@pytest.fixture
def api(clients: list[httpx.AsyncClient]) -> httpx.AsyncClient:
    return clients[0]
