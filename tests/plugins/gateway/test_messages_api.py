"""`POST /v1/messages` driven by the official `anthropic` SDK, for a model on an Anthropic provider, one on an
OpenAI-compatible provider and the mock, streaming and not, in both plugin modes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest
from anthropic.types import MessageParam, TextBlock, ToolParam, ToolUseBlock
from openai.types import CompletionUsage
from openai.types.chat import ChatCompletion, ChatCompletionMessage, ChatCompletionMessageFunctionToolCall
from openai.types.chat.chat_completion import Choice
from openai.types.chat.chat_completion_message_function_tool_call import Function

from tests.conftest import Deployer
from tests.plugins.gateway.conftest import Served, served_gateway, write_config
from tests.plugins.gateway.sdk_upstream import SdkUpstream, sdk_upstream, two_providers

TOOLS: list[ToolParam] = [
    {
        "name": "weather",
        "description": "the weather in a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
]
EVENT_ORDER = ["message_start", "content_block_start", "content_block_delta", "content_block_stop", "message_delta"]


@dataclass
class Setup:
    oa: SdkUpstream
    an: SdkUpstream
    g: Served
    sdk: anthropic.AsyncAnthropic
    key: str


@pytest.fixture
async def setup(deploy_app: Deployer, tmp_path: Path) -> AsyncIterator[Setup]:
    with sdk_upstream("oa") as (oa, oa_url), sdk_upstream("an") as (an, an_url):
        config = write_config(tmp_path, two_providers(oa_url, an_url))
        async with served_gateway(deploy_app, FAAS_GATEWAY_CONFIG=config, OA_KEY="sk-oa", AN_KEY="sk-an") as g:
            key = g.sdk.api_key
            client = anthropic.AsyncAnthropic(base_url=g.url, api_key=key, max_retries=0)
            try:
                yield Setup(oa, an, g, client, key)
            finally:
                await client.close()


def text_of(m: anthropic.types.Message) -> str:
    return "".join(b.text for b in m.content if isinstance(b, TextBlock))


@pytest.mark.parametrize(("model", "who"), [("claude", "an"), ("gpt", "oa"), ("mock-1", "mock")])
async def test_a_message_with_a_system_prompt_for_any_model(setup: Setup, model: str, who: str) -> None:
    m = await setup.sdk.messages.create(
        model=model, max_tokens=50, system="be brief", messages=[{"role": "user", "content": "hi there"}]
    )
    assert m.type == "message" and m.role == "assistant" and m.model == model
    want = "You said: hi there" if who == "mock" else f"{who} says: hi there"
    assert text_of(m) == want and m.stop_reason == "end_turn"
    assert m.usage.input_tokens > 0 and m.usage.output_tokens > 0
    if who == "an":
        sent = setup.an.received[-1]
        assert sent["system"] == "be brief" and sent["max_tokens"] == 50
        assert sent["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi there"}]}]
    if who == "oa":
        sent = setup.oa.received[-1]
        assert sent["messages"] == [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hi there"},
        ]


@pytest.mark.parametrize("model", ["claude", "gpt"])
async def test_the_stream_is_the_documented_event_sequence(setup: Setup, model: str) -> None:
    stream = await setup.sdk.messages.create(
        model=model, max_tokens=50, messages=[{"role": "user", "content": "one two three"}], stream=True
    )
    events = [e async for e in stream]
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    assert [k for i, k in enumerate(kinds) if i == 0 or k != kinds[i - 1]][:5] == EVENT_ORDER
    text = "".join(e.delta.text for e in events if e.type == "content_block_delta" and e.delta.type == "text_delta")
    assert text.endswith("says: one two three")
    delta = next(e for e in events if e.type == "message_delta")
    assert delta.delta.stop_reason == "end_turn" and delta.usage.output_tokens > 0
    # The SDK's own stream helper assembles the same message.
    async with setup.sdk.messages.stream(
        model=model, max_tokens=50, messages=[{"role": "user", "content": "one two three"}]
    ) as s:
        final = await s.get_final_message()
    assert text_of(final) == text and final.stop_reason == "end_turn"


def _tool_call_completion(body: dict[str, Any]) -> ChatCompletion:
    if body["messages"][-1]["role"] == "tool":
        reply = ChatCompletionMessage(role="assistant", content=f"it is {body['messages'][-1]['content']}")
        finish = "stop"
    else:
        call = ChatCompletionMessageFunctionToolCall(
            id="call_9", type="function", function=Function(name="weather", arguments='{"city": "Oslo"}')
        )
        reply = ChatCompletionMessage(role="assistant", content=None, tool_calls=[call])
        finish = "tool_calls"
    return ChatCompletion(
        id="c",
        object="chat.completion",
        created=1,
        model=body["model"],
        choices=[Choice(index=0, finish_reason=finish, message=reply)],  # type: ignore[arg-type]
        usage=CompletionUsage(prompt_tokens=5, completion_tokens=3, total_tokens=8),
    )


@pytest.mark.parametrize("stream", [False, True])
async def test_tools_and_tool_results_round_trip_through_an_openai_provider(setup: Setup, stream: bool) -> None:
    setup.oa.reply_openai = _tool_call_completion
    messages: list[MessageParam] = [{"role": "user", "content": "weather in Oslo?"}]
    m: anthropic.types.Message
    if stream:
        async with setup.sdk.messages.stream(model="gpt", max_tokens=50, messages=messages, tools=TOOLS) as s:
            m = await s.get_final_message()
    else:
        m = await setup.sdk.messages.create(model="gpt", max_tokens=50, messages=messages, tools=TOOLS)
    use = next(b for b in m.content if isinstance(b, ToolUseBlock))
    assert m.stop_reason == "tool_use" and use.name == "weather" and use.input == {"city": "Oslo"}
    assert setup.oa.received[-1]["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "parameters": TOOLS[0]["input_schema"],
                "description": "the weather in a city",
            },
        }
    ]
    messages += [
        {"role": "assistant", "content": m.content},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}]},
    ]
    m2 = await setup.sdk.messages.create(model="gpt", max_tokens=50, messages=messages, tools=TOOLS)
    assert text_of(m2) == "it is sunny"
    sent = setup.oa.received[-1]["messages"]
    assert sent[1]["tool_calls"][0]["id"] == use.id and json.loads(
        sent[1]["tool_calls"][0]["function"]["arguments"]
    ) == {"city": "Oslo"}
    assert sent[2] == {"role": "tool", "tool_call_id": use.id, "content": "sunny"}


async def test_an_anthropic_provider_gets_tools_and_tool_choice_back_in_its_own_terms(setup: Setup) -> None:
    await setup.sdk.messages.create(
        model="claude",
        max_tokens=20,
        messages=[{"role": "user", "content": "x"}],
        tools=TOOLS,
        tool_choice={"type": "tool", "name": "weather", "disable_parallel_tool_use": True},
    )
    sent = setup.an.received[-1]
    assert sent["tools"] == [{**TOOLS[0]}]
    assert sent["tool_choice"] == {"type": "tool", "name": "weather", "disable_parallel_tool_use": True}


async def test_errors_are_anthropic_shaped_and_x_api_key_authenticates(setup: Setup) -> None:
    async with httpx.AsyncClient(base_url=setup.g.url) as http:
        body = {"model": "mock-1", "max_tokens": 5, "messages": [{"role": "user", "content": "hey"}]}
        r = await http.post("/v1/messages", json=body, headers={"x-api-key": setup.key})
        assert r.status_code == 200 and r.json()["content"] == [{"type": "text", "text": "You said: hey"}]
        r = await http.post("/v1/messages", json=body, headers={"x-api-key": "faas_wrong"})
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
        r = await http.post("/v1/messages", json={**body, "max_tokens": 0}, headers={"x-api-key": setup.key})
        assert r.status_code == 400 and r.json()["type"] == "error" and "max_tokens" in r.json()["error"]["message"]
        empty = {**body, "messages": [{"role": "user", "content": []}]}
        r = await http.post("/v1/messages", json=empty, headers={"x-api-key": setup.key})
        assert r.status_code == 200 and r.json()["content"] == [{"type": "text", "text": "You said: "}]
        textless = {**body, "messages": [{"role": "user", "content": [{"type": "text"}]}]}
        r = await http.post("/v1/messages", json=textless, headers={"x-api-key": setup.key})
        assert r.status_code == 400 and "'text' string" in r.json()["error"]["message"], r.text
    with pytest.raises(anthropic.NotFoundError):
        await setup.sdk.messages.create(model="nope", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.BadRequestError) as err:
        await setup.sdk.messages.create(
            model="gpt", max_tokens=5, messages=[{"role": "user", "content": "x"}], extra_body={"top_k": 5}
        )
    assert "top_k" in str(err.value)
    bad = anthropic.AsyncAnthropic(base_url=setup.g.url, api_key="faas_wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        await bad.messages.create(model="gpt", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    await bad.close()


async def test_messages_are_metered_like_chat_completions(setup: Setup) -> None:
    await setup.sdk.messages.create(model="claude", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    async with setup.sdk.messages.stream(
        model="claude", max_tokens=5, messages=[{"role": "user", "content": "y"}]
    ) as s:
        await s.get_final_message()
    rows = (await setup.g.http.get("/api/v1/gateway/usage")).json()["data"]
    claude = next(row for row in rows if row["model"] == "claude")
    assert (claude["requests"], claude["prompt_tokens"], claude["completion_tokens"]) == (2, 26, 18)
