"""OpenAI-compatible and Anthropic upstreams on 127.0.0.1 behind the gateway, driven by the openai SDK."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import cast

from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam

from tests.conftest import Deployer, eventually
from tests.plugins.gateway.conftest import content, fake_upstream, function_call, served_gateway, write_config
from tests.servers import unused_port

TOOLS: list[ChatCompletionToolParam] = [
    {
        "type": "function",
        "function": {
            "name": "weather",
            "description": "d",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


async def test_openai_and_anthropic_deployments(deploy_app: Deployer, tmp_path: Path) -> None:
    with fake_upstream("oa") as (oa, oa_url), fake_upstream("an") as (an, an_url):
        config = write_config(
            tmp_path,
            {
                "gpt": {
                    "deployments": [
                        {"provider": "openai", "model": "gpt-test", "base_url": f"{oa_url}/v1", "api_key_env": "OA_KEY"}
                    ]
                },
                "claude": {
                    "deployments": [
                        {"provider": "anthropic", "model": "claude-test", "base_url": an_url, "api_key_env": "AN_KEY"}
                    ]
                },
                "emb": {
                    "kind": "embeddings",
                    "deployments": [{"provider": "openai", "model": "text-embedding-test", "base_url": f"{oa_url}/v1"}],
                },
            },
        )
        async with served_gateway(deploy_app, FAAS_GATEWAY_CONFIG=config, OA_KEY="sk-oa", AN_KEY="sk-an") as g:
            sdk = g.sdk
            msgs: list[ChatCompletionMessageParam] = [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "hi there"},
            ]

            r = await sdk.chat.completions.create(model="gpt", messages=msgs, temperature=0.5, seed=7)
            assert content(r) == "oa says: hi there"
            sent = oa.received[-1]
            assert sent["model"] == "gpt-test" and sent["seed"] == 7 and sent["temperature"] == 0.5
            assert oa.headers[-1]["authorization"] == "Bearer sk-oa"

            r = await sdk.chat.completions.create(model="claude", messages=msgs, max_tokens=50)
            assert content(r) == "an says: hi there" and r.usage is not None and r.usage.prompt_tokens == 13
            sent = an.received[-1]
            assert sent["system"] == "be brief" and sent["messages"] == [
                {"role": "user", "content": [{"type": "text", "text": "hi there"}]}
            ]
            assert sent["max_tokens"] == 50 and an.headers[-1]["x-api-key"] == "sk-an"
            assert an.headers[-1]["anthropic-version"]

            for model, who in (("gpt", "oa"), ("claude", "an")):
                chunks = [
                    c
                    async for c in await sdk.chat.completions.create(
                        model=model, messages=msgs, stream=True, stream_options={"include_usage": True}
                    )
                ]
                assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == f"{who} says: hi there"
                assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
            assert oa.received[-1]["stream_options"] == {"include_usage": True}

            # Tool calls, both ways, both modes.
            r = await sdk.chat.completions.create(model="claude", messages=msgs, tools=TOOLS, tool_choice="required")
            call = function_call(r)
            assert r.choices[0].finish_reason == "tool_calls"
            assert call.function.name == "weather" and json.loads(call.function.arguments) == {"city": "Paris"}
            assert an.received[-1]["tools"][0]["input_schema"]["properties"] == {"city": {"type": "string"}}
            assert an.received[-1]["tool_choice"] == {"type": "any"}
            follow: list[ChatCompletionMessageParam] = [
                *msgs,
                cast(ChatCompletionMessageParam, r.choices[0].message.model_dump(exclude_none=True)),
                {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
            ]
            await sdk.chat.completions.create(model="claude", messages=follow, tools=TOOLS)
            turns = an.received[-1]["messages"]
            assert turns[1]["role"] == "assistant" and turns[1]["content"][-1] == {
                "type": "tool_use",
                "id": "toolu_1",
                "name": "weather",
                "input": {"city": "Paris"},
            }
            assert turns[2] == {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}],
            }
            stream = await sdk.chat.completions.create(model="claude", messages=msgs, tools=TOOLS, stream=True)
            chunks = [c async for c in stream]
            deltas = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
            assert deltas[0].id == "toolu_1" and deltas[0].function and deltas[0].function.name == "weather"
            assert json.loads("".join(d.function.arguments or "" for d in deltas if d.function)) == {"city": "Paris"}
            assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
            r = await sdk.chat.completions.create(model="gpt", messages=msgs, tools=TOOLS)
            assert function_call(r).function.name == "weather"

            e = await sdk.embeddings.create(model="emb", input=["abc", "hello"])
            assert [d.embedding for d in e.data] == [[3.0, 1.0, 0.5], [5.0, 1.0, 0.5]]
            assert oa.received[-1]["model"] == "text-embedding-test"


async def test_env_only_providers_serve_every_listed_model(deploy_app: Deployer) -> None:
    with (
        fake_upstream("oa", models=["gpt-a", "gpt-b"]) as (oa, oa_url),
        fake_upstream("an", models=["claude-a"]) as (an, an_url),
    ):
        env = {
            "OPENAI_API_KEY": "sk-env",
            "OPENAI_BASE_URL": f"{oa_url}/v1",
            "ANTHROPIC_API_KEY": "sk-ant",
            "ANTHROPIC_BASE_URL": an_url,
        }
        async with served_gateway(deploy_app, **env) as g:
            sdk = g.sdk
            names = {m.id async for m in sdk.models.list()}
            # The local embedding model and the mock chat model stay beside the providers' own.
            assert names == {"gpt-a", "gpt-b", "claude-a", "mock-1", "all-MiniLM-L6-v2"}
            r = await sdk.chat.completions.create(model="gpt-b", messages=[{"role": "user", "content": "x"}])
            assert content(r) == "oa says: x" and oa.received[-1]["model"] == "gpt-b"
            assert oa.headers[-1]["authorization"] == "Bearer sk-env"
            r = await sdk.chat.completions.create(model="claude-a", messages=[{"role": "user", "content": "y"}])
            assert content(r) == "an says: y" and an.headers[-1]["x-api-key"] == "sk-ant"


async def test_a_burst_of_first_requests_waits_for_the_one_model_listing(deploy_app: Deployer) -> None:
    # A cold replica: 20 concurrent first requests for a model only the upstream's listing names. Each must wait
    # for the one listing in flight (not see an empty catalog and answer 404), and the upstream is listed once.
    with fake_upstream("oa", models=["gpt-a"], list_delay=0.5) as (oa, oa_url):
        env = {"OPENAI_API_KEY": "sk-env", "OPENAI_BASE_URL": f"{oa_url}/v1"}
        async with served_gateway(deploy_app, **env) as g:
            body = {"model": "gpt-a", "messages": [{"role": "user", "content": "x"}]}
            answers = await asyncio.gather(*(g.http.post("/v1/chat/completions", json=body) for _ in range(20)))
            assert [r.status_code for r in answers] == [200] * 20, [r.text for r in answers if r.status_code != 200]
            assert oa.listings == 1


async def test_a_provider_down_at_the_first_listing_is_listed_again_soon(deploy_app: Deployer) -> None:
    # The provider is unreachable when the first request comes: its models cannot be known yet, so a model the
    # catalog does not know is a 503 with Retry-After (not a 404). Once it is back, the next listing comes within
    # seconds (backoff), not after the 300 s TTL.
    port = unused_port()
    env = {"OPENAI_API_KEY": "sk-env", "OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1"}
    async with served_gateway(deploy_app, **env) as g:
        body = {"model": "gpt-late", "messages": [{"role": "user", "content": "x"}]}
        r = await g.http.post("/v1/chat/completions", json=body)
        assert r.status_code == 503, r.text
        assert 1 <= int(r.headers["retry-after"]) <= 30
        assert "gpt-late" in r.json()["error"]["message"]
        # The local model does not depend on any listing.
        e = await g.http.post("/v1/embeddings", json={"model": "all-MiniLM-L6-v2", "input": "hi"})
        assert e.status_code == 200, e.text

        with fake_upstream("oa", models=["gpt-late"], port=port) as (oa, _):

            async def served() -> None:
                r = await g.http.post("/v1/chat/completions", json=body)
                assert r.status_code == 200, r.text
                assert r.json()["choices"][0]["message"]["content"] == "oa says: x"

            await eventually(served, within=20.0, interval=0.2)
            assert oa.listings >= 1
            # Listed now: a name the provider does not list is a plain 404.
            missing = await g.http.post("/v1/chat/completions", json={**body, "model": "gpt-nope"})
            assert missing.status_code == 404, missing.text


async def test_a_failing_listing_is_retried_with_backoff_not_by_every_request(deploy_app: Deployer) -> None:
    with fake_upstream("oa", models=["gpt-a"], list_fail_status=500) as (oa, oa_url):
        env = {"OPENAI_API_KEY": "sk-env", "OPENAI_BASE_URL": f"{oa_url}/v1"}
        async with served_gateway(deploy_app, **env) as g:
            body = {"model": "gpt-a", "messages": [{"role": "user", "content": "x"}]}
            answers = await asyncio.gather(*(g.http.post("/v1/chat/completions", json=body) for _ in range(20)))
            assert {r.status_code for r in answers} == {503}
            assert all(r.headers.get("retry-after") for r in answers)
            assert 1 <= oa.listings <= 2, f"{oa.listings} listings for 20 requests: no backoff"
            oa.list_fail_status = None

            async def served() -> None:
                r = await g.http.post("/v1/chat/completions", json=body)
                assert r.status_code == 200, r.text

            await eventually(served, within=20.0, interval=0.2)
