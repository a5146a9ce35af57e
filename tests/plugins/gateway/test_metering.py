"""Metering in both gateway modes, against fake providers on 127.0.0.1 that record what they receive: a call
cancelled mid-way settles its reservation and leaves a ledger row, and a provider is held to the completion
limit that was reserved, also when the client set none."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from plugins.gateway.catalog import OPENAI_DEFAULT_BASE, Deployment
from plugins.gateway.openai_provider import upstream_body
from tests.conftest import eventually
from tests.harness import Mode, Tenant
from tests.plugins.gateway.conftest import fake_upstream, same_minute, write_config
from tests.plugins.gateway.test_ledger import counted, reservations_settled
from tests.plugins.gateway.upstreams import FakeUpstream

MSG = [{"role": "user", "content": "hello"}]


@pytest.fixture
def provider() -> Iterator[tuple[FakeUpstream, str]]:
    with fake_upstream("fake") as pair:
        yield pair


@pytest.fixture
def deploy_env(tmp_path: Path, provider: tuple[FakeUpstream, str]) -> dict[str, str]:
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
    mode: Mode,
    api: httpx.AsyncClient,
    admin: httpx.AsyncClient,
    tenant: Tenant,
    provider: tuple[FakeUpstream, str],
    database_url: str,
) -> None:
    fake, _ = provider
    await counted(admin, tenant.tenant_id)
    fake.delay = 2.0  # the provider is slow: the call is cut while it waits
    await same_minute(seconds_needed=20)
    call = asyncio.create_task(
        api.post("/v1/chat/completions", json={"model": "oa", "messages": MSG, "max_tokens": 1000})
    )

    async def with_the_provider() -> None:
        assert fake.received

    await eventually(with_the_provider)
    call.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await call
    tenant_id = tenant.tenant_id
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


async def test_a_provider_is_held_to_the_reserved_completion_limit(
    api: httpx.AsyncClient,
    admin: httpx.AsyncClient,
    tenant: Tenant,
    provider: tuple[FakeUpstream, str],
) -> None:
    fake, _ = provider
    policy = await admin.put(f"/api/v1/gateway/tenants/{tenant.tenant_id}/policy", json={"tpm": 1100})
    assert policy.status_code == 200, policy.text
    default = 1024  # FAAS_GATEWAY_DEFAULT_MAX_TOKENS: what a call without a limit reserves
    for body in (
        {"model": "oa", "messages": MSG},
        {"model": "oa", "messages": MSG, "stream": True},
        {"model": "claude", "messages": MSG},
    ):
        r = await api.post("/v1/chat/completions", json=body)
        assert r.status_code == 200, r.text
        assert fake.received[-1]["max_tokens"] == default, (body, fake.received[-1])
    r = await api.post("/v1/chat/completions", json={"model": "claude", "messages": MSG, "max_tokens": 7})
    assert r.status_code == 200 and fake.received[-1]["max_tokens"] == 7  # the client's own limit, untouched


def test_openai_itself_gets_the_limit_in_the_field_it_accepts_for_every_model() -> None:
    body = {"messages": MSG, "max_tokens": 12}
    official = upstream_body(Deployment("o", "openai", "o3-mini", base_url=OPENAI_DEFAULT_BASE), body)
    compatible = upstream_body(Deployment("v", "openai", "llama", base_url="http://vllm:8000/v1"), body)
    assert official["max_completion_tokens"] == 12 and "max_tokens" not in official
    assert compatible["max_tokens"] == 12 and "max_completion_tokens" not in compatible
