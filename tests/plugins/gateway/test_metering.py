"""Metering in both gateway modes, against fake providers on 127.0.0.1 that record what they receive: a call
cancelled mid-way settles its reservation and leaves a ledger row."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.conftest import eventually
from tests.plugins.gateway.conftest import fake_upstream, same_minute, write_config
from tests.plugins.gateway.test_ledger import reservations_settled
from tests.plugins.gateway.upstreams import FakeUpstream

MSG = [{"role": "user", "content": "hello"}]


@pytest.fixture
def provider() -> Iterator[tuple[FakeUpstream, str]]:
    with fake_upstream("fake") as pair:
        yield pair


@pytest.fixture
def remote_plugins() -> tuple[str, ...]:
    return ("gateway",)


@pytest.fixture
def mode_env(tmp_path: Path, provider: tuple[FakeUpstream, str]) -> dict[str, str]:
    _, url = provider
    config = write_config(
        tmp_path,
        {
            "oa": {"deployments": [{"provider": "openai", "model": "gpt-test", "base_url": f"{url}/v1"}]},
            "claude": {"deployments": [{"provider": "anthropic", "model": "claude-test", "base_url": url}]},
        },
    )
    return {"FAAS_GATEWAY_CONFIG": config}


async def test_a_cancelled_call_settles_its_reservation_and_leaves_a_row(
    mode: str,
    mode_api: httpx.AsyncClient,
    mode_tenant: dict[str, str],
    provider: tuple[FakeUpstream, str],
    database_url: str,
) -> None:
    fake, _ = provider
    fake.delay = 2.0  # the provider is slow: the call is cut while it waits
    await same_minute(seconds_needed=20)
    call = asyncio.create_task(
        mode_api.post("/v1/chat/completions", json={"model": "oa", "messages": MSG, "max_tokens": 1000})
    )

    async def with_the_provider() -> None:
        assert fake.received

    await eventually(with_the_provider)
    call.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await call
    tenant_id = mode_tenant["tenant_id"]
    conn = await asyncpg.connect(database_url)
    try:

        async def recorded() -> None:
            rows = await conn.fetch("SELECT status, error FROM gateway_usage WHERE tenant_id = $1", tenant_id)
            # Direct: the gateway itself was cancelled. Remote: the front's call was cut, and the serving replica,
            # which does not notice that its caller left a non-streaming call, finished it and recorded it whole.
            expected = 499 if mode == "direct" else 200
            assert [row["status"] for row in rows] == [expected], rows
            held, used = await reservations_settled(conn, tenant_id)
            assert held == used < 1000

        await eventually(recorded)
    finally:
        await conn.close()
