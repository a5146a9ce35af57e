"""The official openai SDK against a real gateway on 127.0.0.1, with no provider configured (mock + local), with
the gateway direct and remote."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import cast

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam

from tests.conftest import Deployer
from tests.plugins.gateway.conftest import content, function_call


@pytest.fixture
async def sdk(deploy_app: Deployer) -> AsyncIterator[openai.AsyncOpenAI]:
    async with deploy_app(served="loop") as d:
        key = (await d.tenant()).api_key
        client = openai.AsyncOpenAI(base_url=f"{d.url}/v1", api_key=key, max_retries=0)
        yield client
        await client.close()


async def test_chat_completion_with_mock_model(sdk: openai.AsyncOpenAI) -> None:
    r = await sdk.chat.completions.create(model="mock-1", messages=[{"role": "user", "content": "hello there"}])
    assert content(r) == "You said: hello there"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage is not None and r.usage.completion_tokens == 4 and r.usage.prompt_tokens > 0


async def test_streaming_with_usage(sdk: openai.AsyncOpenAI) -> None:
    stream = await sdk.chat.completions.create(
        model="mock-1",
        messages=[{"role": "user", "content": "one two three"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "You said: one two three"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


async def test_stream_without_include_usage_has_no_usage_chunk(sdk: openai.AsyncOpenAI) -> None:
    stream = await sdk.chat.completions.create(model="mock-1", messages=[{"role": "user", "content": "x"}], stream=True)
    chunks = [c async for c in stream]
    assert all(c.choices for c in chunks)


async def test_tool_calling_round_trip(sdk: openai.AsyncOpenAI) -> None:
    tools: list[ChatCompletionToolParam] = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                    "required": ["city", "days"],
                },
            },
        }
    ]
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Paris"}]
    r = await sdk.chat.completions.create(model="mock-1", messages=messages, tools=tools)
    call = function_call(r)
    assert r.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris", "days": 1}
    messages += [
        cast(ChatCompletionMessageParam, r.choices[0].message.model_dump(exclude_none=True)),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
    ]
    r2 = await sdk.chat.completions.create(model="mock-1", messages=messages, tools=tools)
    assert content(r2) == "The tool returned: sunny"
    # Streamed tool calls reassemble into the same call.
    stream = await sdk.chat.completions.create(model="mock-1", messages=messages[:1], tools=tools, stream=True)
    chunks = [c async for c in stream]
    args = "".join(
        (tc.function.arguments if tc.function else "") or ""
        for c in chunks
        if c.choices
        for tc in c.choices[0].delta.tool_calls or []
    )
    assert json.loads(args) == {"city": "Paris", "days": 1}


async def test_embeddings_local_model_base64_and_float(sdk: openai.AsyncOpenAI) -> None:
    r = await sdk.embeddings.create(model="all-MiniLM-L6-v2", input=["a cat on a mat", "a kitten on a rug", "tax law"])
    vecs = [d.embedding for d in r.data]
    assert [len(v) for v in vecs] == [384, 384, 384]

    def cos(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert abs(cos(vecs[0], vecs[0]) - 1) < 1e-4
    assert cos(vecs[0], vecs[1]) > 0.5 > cos(vecs[0], vecs[2])
    r2 = await sdk.embeddings.create(model="all-MiniLM-L6-v2", input="a cat on a mat", encoding_format="float")
    assert max(abs(a - b) for a, b in zip(r2.data[0].embedding, vecs[0], strict=True)) < 1e-6
    assert r.usage.prompt_tokens > 0


async def test_models_and_unknown_model_error(sdk: openai.AsyncOpenAI) -> None:
    names = {m.id async for m in sdk.models.list()}
    assert names == {"mock-1", "all-MiniLM-L6-v2"}
    with pytest.raises(openai.NotFoundError) as err:
        await sdk.chat.completions.create(model="gpt-nope", messages=[{"role": "user", "content": "x"}])
    body = err.value.body
    assert isinstance(body, dict) and body["code"] == "model_not_found" and "mock-1" in body["message"]


async def test_errors_are_openai_shaped(sdk: openai.AsyncOpenAI) -> None:
    bad = openai.AsyncOpenAI(base_url=str(sdk.base_url), api_key="faas_wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as err:
        await bad.models.list()
    assert err.value.status_code == 401 and isinstance(err.value.body, dict) and err.value.body["type"]
    with pytest.raises(openai.BadRequestError) as err2:
        await sdk.chat.completions.create(model="mock-1", messages=[])
    assert isinstance(err2.value.body, dict) and err2.value.body["param"] == "messages"
    await bad.close()
