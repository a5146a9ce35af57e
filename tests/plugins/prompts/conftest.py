"""Prompts fixtures: the API tests run with the prompts plugin direct and remote (`mode`), for two tenants.

In remote mode the app the clients talk to serves the routes and calls a second app instance (the prompts plugin
direct, under uvicorn on 127.0.0.1) through `RemotePromptsService`; both mount the prompts plugin alone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_KEY, asgi_client, new_tenant


@pytest.fixture
def remote_plugins() -> tuple[str, ...]:
    return ("prompts",)


@pytest.fixture
def mode_env() -> dict[str, str]:
    return {"FAAS_PLUGINS": "prompts"}


@pytest.fixture
async def clients(mode_app: Any) -> AsyncIterator[list[httpx.AsyncClient]]:
    """Clients of two different tenants."""
    async with asgi_client(mode_app, authorization=f"Bearer {ADMIN_KEY}") as admin:
        keys = [(await new_tenant(admin))["api_key"] for _ in range(2)]
    a = asgi_client(mode_app, authorization=f"Bearer {keys[0]}")
    b = asgi_client(mode_app, authorization=f"Bearer {keys[1]}")
    async with a, b:
        yield [a, b]


@pytest.fixture
def api(clients: list[httpx.AsyncClient]) -> httpx.AsyncClient:
    return clients[0]
