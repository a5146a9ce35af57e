"""Gateway test helpers: fake providers on 127.0.0.1 and the gateway itself under uvicorn."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.main import create_app
from tests.conftest import ADMIN_KEY, make_settings
from tests.plugins.gateway.upstreams import FakeUpstream
from tests.servers import serve_in_thread


@contextmanager
def fake_upstream(name: str = "up", **kw: Any) -> Iterator[tuple[FakeUpstream, str]]:
    fake = FakeUpstream(name=name, **kw)
    with serve_in_thread(fake.app()) as url:
        yield fake, url


@pytest.fixture
def upstream() -> Iterator[tuple[FakeUpstream, str]]:
    with fake_upstream() as pair:
        yield pair


def write_config(tmp_path: Path, models: dict[str, Any]) -> str:
    path = tmp_path / "gateway.json"
    path.write_text(json.dumps({"models": models}))
    return str(path)


@contextmanager
def gateway(database_url: str, **env: str) -> Iterator[str]:
    """The whole app under uvicorn on 127.0.0.1 (so streaming is real); yields its base URL."""
    with serve_in_thread(create_app(make_settings(database_url, **env))) as url:
        yield url


def tenant_key(base_url: str, name: str | None = None) -> dict[str, str]:
    import secrets

    r = httpx.post(
        f"{base_url}/api/v1/admin/tenants",
        json={"name": name or "t-" + secrets.token_hex(4)},
        headers={"authorization": f"Bearer {ADMIN_KEY}"},
    )
    assert r.status_code == 201, r.text
    data: dict[str, str] = r.json()
    return data


def set_policy(base_url: str, tenant_id: str, **policy: Any) -> None:
    r = httpx.put(
        f"{base_url}/api/v1/gateway/tenants/{tenant_id}/policy",
        json=policy,
        headers={"authorization": f"Bearer {ADMIN_KEY}"},
    )
    assert r.status_code == 200, r.text


async def same_minute(*, seconds_needed: float) -> None:
    """Sleep into the next minute when fewer than `seconds_needed` are left of this one, so that a test's calls
    share one rate-limit window (the database's clock is this machine's)."""
    left = 60 - time.time() % 60
    if left < seconds_needed:
        await asyncio.sleep(left + 0.2)
