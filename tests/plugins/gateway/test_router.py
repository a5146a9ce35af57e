"""Fallbacks, breakers and streaming failures, asserted on what each upstream received."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.conftest import Deployer
from tests.plugins.gateway.conftest import Served, content, fake_upstream, served_gateway, write_config

# The weight of the deployment a test expects to be tried first, against 1 for the other: the router picks the first
# at random by weight, and at 1000 to 1 the other came first about once in a thousand picks, which failed a CI run.
FIRST = 1e12


def _two(tmp_path: Path, a_url: str, b_url: str, **extra: object) -> str:
    return write_config(
        tmp_path,
        {
            "m": {
                "deployments": [
                    {
                        "provider": "openai",
                        "model": "a-model",
                        "base_url": f"{a_url}/v1",
                        "weight": FIRST,
                        "name": "A",
                        **extra,
                    },
                    {"provider": "openai", "model": "b-model", "base_url": f"{b_url}/v1", "weight": 1, "name": "B"},
                ]
            }
        },
    )


MSG: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello world again"}]


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_falls_back_on_429_and_5xx_then_breaker_opens(deploy_app: Deployer, tmp_path: Path, status: int) -> None:
    with fake_upstream("A", fail_status=status) as (a, a_url), fake_upstream("B") as (b, b_url):
        env = {
            "FAAS_GATEWAY_CONFIG": _two(tmp_path, a_url, b_url),
            "FAAS_GATEWAY_BREAKER_FAIL_MAX": "2",
            "FAAS_GATEWAY_BREAKER_RESET_SECONDS": "60",
        }
        async with served_gateway(deploy_app, **env) as g:
            sdk = g.sdk
            for _ in range(4):
                r = await sdk.chat.completions.create(model="m", messages=MSG)
                assert content(r) == "B says: hello world again"
            assert len(b.received) == 4
            # 5xx trips A's breaker after 2 failures, so A is skipped; a 429 never trips it.
            assert len(a.received) == (4 if status == 429 else 2)


async def test_timeout_falls_back(deploy_app: Deployer, tmp_path: Path) -> None:
    with fake_upstream("A", delay=2.0) as (a, a_url), fake_upstream("B") as (_, b_url):
        async with served_gateway(
            deploy_app, FAAS_GATEWAY_CONFIG=_two(tmp_path, a_url, b_url, timeout_seconds=0.3)
        ) as g:
            sdk = g.sdk
            r = await sdk.chat.completions.create(model="m", messages=MSG)
            assert content(r).startswith("B says") and len(a.received) == 1


async def test_client_error_is_not_retried_elsewhere(deploy_app: Deployer, tmp_path: Path) -> None:
    with fake_upstream("A", fail_status=400) as (a, a_url), fake_upstream("B") as (b, b_url):
        async with served_gateway(deploy_app, FAAS_GATEWAY_CONFIG=_two(tmp_path, a_url, b_url)) as g:
            sdk = g.sdk
            with pytest.raises(openai.BadRequestError) as err:
                await sdk.chat.completions.create(model="m", messages=MSG)
            # The provider's words are for the operator's log; the tenant learns the model and what to check.
            assert "A failing with 400" not in err.value.message and "model m:" in err.value.message
            assert len(a.received) == 1 and b.received == []


async def test_all_rate_limited_passes_retry_after_on(deploy_app: Deployer, tmp_path: Path) -> None:
    with (
        fake_upstream("A", fail_status=429, retry_after="7") as (a, a_url),
        fake_upstream("B", fail_status=429, retry_after="9") as (b, b_url),
    ):
        async with served_gateway(deploy_app, FAAS_GATEWAY_CONFIG=_two(tmp_path, a_url, b_url)) as g:
            r = await g.http.post("/v1/chat/completions", json={"model": "m", "messages": MSG})
            assert r.status_code == 429 and r.headers["retry-after"] == "9"
            assert r.json()["error"]["type"] == "rate_limit_error"
            assert len(a.received) == 1 and len(b.received) == 1


async def _stream(g: Served) -> tuple[int, list[str]]:
    async with g.http.stream("POST", "/v1/chat/completions", json={"model": "m", "messages": MSG, "stream": True}) as r:
        return r.status_code, [line async for line in r.aiter_lines() if line.startswith("data:")]


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_mid_stream_failure_ends_with_error_not_done(deploy_app: Deployer, tmp_path: Path, provider: str) -> None:
    with fake_upstream("A", fail_midstream=True) as (_, a_url), fake_upstream("B") as (b, b_url):
        base = f"{a_url}/v1" if provider == "openai" else a_url
        config = write_config(
            tmp_path,
            {
                "m": {
                    "deployments": [
                        {"provider": provider, "model": "x", "base_url": base, "weight": FIRST},
                        {"provider": "openai", "model": "y", "base_url": f"{b_url}/v1", "weight": 1},
                    ]
                }
            },
        )
        async with served_gateway(deploy_app, FAAS_GATEWAY_CONFIG=config) as g:
            status, events = await _stream(g)
            assert status == 200
            assert "A" in events[1] and "error" in events[-1] and "[DONE]" not in events[-1]
            assert b.received == []  # nothing retried after the first streamed byte


async def test_stream_falls_back_before_first_byte(deploy_app: Deployer, tmp_path: Path) -> None:
    with fake_upstream("A", fail_status=502) as (a, a_url), fake_upstream("B") as (b, b_url):
        async with served_gateway(deploy_app, FAAS_GATEWAY_CONFIG=_two(tmp_path, a_url, b_url)) as g:
            status, events = await _stream(g)
            assert status == 200 and events[-1] == "data: [DONE]" and "B" in "".join(events)
            assert len(a.received) == 1 and len(b.received) == 1
