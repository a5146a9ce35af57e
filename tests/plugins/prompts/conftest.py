"""Prompts fixtures: the API tests run with the prompts plugin direct and remote (`mode`), for two tenants.

In remote mode the app the clients talk to serves the routes and calls a second app instance (the prompts plugin
direct, under uvicorn on 127.0.0.1) through `RemotePromptsService`; both mount the prompts plugin alone.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from plugins.prompts.worker import MARK
from tests.conftest import ADMIN_KEY, asgi_client, new_tenant


def render_workers(parents: set[int] | None = None, *, anywhere: bool = False) -> dict[int, int]:
    """Live (not zombie) render worker processes whose parent is in `parents` (default: this process), or whatever
    their parent when `anywhere`, read from /proc: pid -> parent pid."""
    parents = {os.getpid()} if parents is None else parents
    found: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if MARK.encode() not in (entry / "cmdline").read_bytes():
                continue
            state, ppid = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:2]
        except (OSError, ValueError):
            continue  # gone meanwhile
        if state != "Z" and (anywhere or int(ppid) in parents):
            found[int(entry.name)] = int(ppid)
    return found


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far."""
    fields = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
