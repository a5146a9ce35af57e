"""`mock-1` follows one rule, whatever providers are configured: there unless FAAS_GATEWAY_MOCK_MODEL=off, so the
README's offline example keeps working once OPENAI_API_KEY is set."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from tests.conftest import Deployer
from tests.plugins.gateway.conftest import content, fake_upstream, served_gateway, write_config

HI: list[openai.types.chat.ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]


async def test_mock_model_stays_when_a_provider_is_configured(deploy_app: Deployer) -> None:
    with fake_upstream("oa", models=["gpt-a"]) as (_, oa_url):
        async with served_gateway(deploy_app, OPENAI_API_KEY="sk-env", OPENAI_BASE_URL=f"{oa_url}/v1") as g:
            assert content(await g.sdk.chat.completions.create(model="mock-1", messages=HI)) == "You said: hi"
            assert content(await g.sdk.chat.completions.create(model="gpt-a", messages=HI)) == "oa says: hi"


async def test_mock_model_stays_beside_a_model_map(deploy_app: Deployer, tmp_path: Path) -> None:
    with fake_upstream("oa") as (_, oa_url):
        config = write_config(
            tmp_path, {"gpt": {"deployments": [{"provider": "openai", "model": "m", "base_url": f"{oa_url}/v1"}]}}
        )
        async with served_gateway(deploy_app, FAAS_GATEWAY_CONFIG=config) as g:
            assert {m.id async for m in g.sdk.models.list()} == {"gpt", "mock-1", "all-MiniLM-L6-v2"}
            assert content(await g.sdk.chat.completions.create(model="mock-1", messages=HI)) == "You said: hi"


@pytest.mark.parametrize("with_provider", [False, True])
async def test_off_removes_it(deploy_app: Deployer, with_provider: bool) -> None:
    with fake_upstream("oa", models=["gpt-a"]) as (_, oa_url):
        env = {"FAAS_GATEWAY_MOCK_MODEL": "off"}
        if with_provider:
            env |= {"OPENAI_API_KEY": "sk-env", "OPENAI_BASE_URL": f"{oa_url}/v1"}
        async with served_gateway(deploy_app, **env) as g:
            names = {m.id async for m in g.sdk.models.list()}
            assert names == ({"gpt-a", "all-MiniLM-L6-v2"} if with_provider else {"all-MiniLM-L6-v2"})
            with pytest.raises(openai.NotFoundError):
                await g.sdk.chat.completions.create(model="mock-1", messages=HI)
