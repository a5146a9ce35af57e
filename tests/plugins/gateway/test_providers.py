"""OpenAI-compatible and Anthropic upstreams on 127.0.0.1 behind the gateway, driven by the openai SDK."""

from __future__ import annotations

import json
from pathlib import Path

import openai

from tests.plugins.gateway.conftest import fake_upstream, gateway, tenant_key, write_config

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "weather",
            "description": "d",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


def test_openai_and_anthropic_deployments(database_url: str, tmp_path: Path) -> None:
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
        with gateway(database_url, FAAS_GATEWAY_CONFIG=config, OA_KEY="sk-oa", AN_KEY="sk-an") as url:
            sdk = openai.OpenAI(base_url=f"{url}/v1", api_key=tenant_key(url)["api_key"], max_retries=0)
            msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi there"}]

            r = sdk.chat.completions.create(model="gpt", messages=msgs, temperature=0.5, seed=7)
            assert r.choices[0].message.content == "oa says: hi there"
            sent = oa.received[-1]
            assert sent["model"] == "gpt-test" and sent["seed"] == 7 and sent["temperature"] == 0.5
            assert oa.headers[-1]["authorization"] == "Bearer sk-oa"

            r = sdk.chat.completions.create(model="claude", messages=msgs, max_tokens=50)
            assert r.choices[0].message.content == "an says: hi there" and r.usage.prompt_tokens == 13
            sent = an.received[-1]
            assert sent["system"] == "be brief" and sent["messages"] == [
                {"role": "user", "content": [{"type": "text", "text": "hi there"}]}
            ]
            assert sent["max_tokens"] == 50 and an.headers[-1]["x-api-key"] == "sk-an"
            assert an.headers[-1]["anthropic-version"]

            for model, who in (("gpt", "oa"), ("claude", "an")):
                chunks = list(
                    sdk.chat.completions.create(
                        model=model, messages=msgs, stream=True, stream_options={"include_usage": True}
                    )
                )
                assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == f"{who} says: hi there"
                assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
            assert oa.received[-1]["stream_options"] == {"include_usage": True}

            # Tool calls, both ways, both modes.
            r = sdk.chat.completions.create(model="claude", messages=msgs, tools=TOOLS, tool_choice="required")
            call = r.choices[0].message.tool_calls[0]
            assert r.choices[0].finish_reason == "tool_calls"
            assert call.function.name == "weather" and json.loads(call.function.arguments) == {"city": "Paris"}
            assert an.received[-1]["tools"][0]["input_schema"]["properties"] == {"city": {"type": "string"}}
            assert an.received[-1]["tool_choice"] == {"type": "any"}
            follow = [
                *msgs,
                r.choices[0].message.model_dump(exclude_none=True),
                {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
            ]
            sdk.chat.completions.create(model="claude", messages=follow, tools=TOOLS)
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
            chunks = list(sdk.chat.completions.create(model="claude", messages=msgs, tools=TOOLS, stream=True))
            deltas = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
            assert deltas[0].id == "toolu_1" and deltas[0].function.name == "weather"
            assert json.loads("".join(d.function.arguments or "" for d in deltas)) == {"city": "Paris"}
            assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
            r = sdk.chat.completions.create(model="gpt", messages=msgs, tools=TOOLS)
            assert r.choices[0].message.tool_calls[0].function.name == "weather"

            e = sdk.embeddings.create(model="emb", input=["abc", "hello"])
            assert [d.embedding for d in e.data] == [[3.0, 1.0, 0.5], [5.0, 1.0, 0.5]]
            assert oa.received[-1]["model"] == "text-embedding-test"
            sdk.close()


def test_env_only_providers_serve_every_listed_model(database_url: str) -> None:
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
        with gateway(database_url, **env) as url:
            sdk = openai.OpenAI(base_url=f"{url}/v1", api_key=tenant_key(url)["api_key"], max_retries=0)
            names = {m.id for m in sdk.models.list()}
            # No mock model once a real provider is configured; the local embedding model stays.
            assert names == {"gpt-a", "gpt-b", "claude-a", "all-MiniLM-L6-v2"}
            r = sdk.chat.completions.create(model="gpt-b", messages=[{"role": "user", "content": "x"}])
            assert r.choices[0].message.content == "oa says: x" and oa.received[-1]["model"] == "gpt-b"
            assert oa.headers[-1]["authorization"] == "Bearer sk-env"
            r = sdk.chat.completions.create(model="claude-a", messages=[{"role": "user", "content": "y"}])
            assert r.choices[0].message.content == "an says: y" and an.headers[-1]["x-api-key"] == "sk-ant"
            sdk.close()
