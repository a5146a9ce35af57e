"""Gateway fixtures: the gateway deployed alone, direct and remote (the root conftest's `mode`), its ledger flushed
often; fake providers on 127.0.0.1; and the gateway itself under uvicorn for blocking clients."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionMessageFunctionToolCall

from tests.conftest import ADMIN_KEY, Deployer
from tests.plugins.gateway.upstreams import FakeUpstream
from tests.servers import serve_in_thread


@pytest.fixture
def deploy_plugins() -> tuple[str, ...]:
    return ("gateway",)


@pytest.fixture
def deploy_env() -> dict[str, str]:
    return {}


@contextmanager
def fake_upstream(name: str = "up", *, port: int = 0, **kw: Any) -> Iterator[tuple[FakeUpstream, str]]:
    fake = FakeUpstream(name=name, **kw)
    with serve_in_thread(fake.app(), port=port) as url:
        yield fake, url


@pytest.fixture
def upstream() -> Iterator[tuple[FakeUpstream, str]]:
    with fake_upstream() as pair:
        yield pair


def write_config(tmp_path: Path, models: dict[str, Any]) -> str:
    path = tmp_path / "gateway.json"
    path.write_text(json.dumps({"models": models}))
    return str(path)


def content(r: ChatCompletion) -> str:
    """The first choice's text (the SDK types it optional)."""
    text = r.choices[0].message.content
    assert text is not None, r
    return text


def function_call(r: ChatCompletion) -> ChatCompletionMessageFunctionToolCall:
    """The first tool call of the first choice, a function call."""
    calls = r.choices[0].message.tool_calls
    assert calls and isinstance(calls[0], ChatCompletionMessageFunctionToolCall), r
    return calls[0]


@dataclass
class Served:
    """The gateway deployment under uvicorn on 127.0.0.1 (streaming is real), with a tenant's SDK and HTTP client."""

    url: str
    sdk: openai.AsyncOpenAI
    http: httpx.AsyncClient


@asynccontextmanager
async def served_gateway(deploy_app: Deployer, **env: str) -> AsyncIterator[Served]:
    """The gateway in this test's mode, served on loopback, with clients for one new tenant."""
    async with deploy_app(env=env, served="loop") as d:
        assert d.url is not None
        key = (await d.tenant()).api_key
        sdk = openai.AsyncOpenAI(base_url=f"{d.url}/v1", api_key=key, max_retries=0)
        try:
            yield Served(d.url, sdk, d.client(key))
        finally:
            await sdk.close()


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
