"""Fidelity of `/v1/chat/completions` to each provider, driven through the `openai` SDK against fake providers whose
answers are the official SDKs' own types (tests/plugins/gateway/sdk_upstream.py), in both plugin modes.

The OpenAI path is exact, chunk for chunk; the Anthropic path translates what has an equivalent and refuses the rest
with a 400 that names the field and the model (unless the model map lets the operator drop it).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic.types as at
import openai
import pytest
from openai.types import CompletionUsage
from openai.types.chat import (
    ChatCompletion,
    ChatCompletionMessage,
    ChatCompletionMessageFunctionToolCall,
    ChatCompletionMessageParam,
    ChatCompletionTokenLogprob,
    ChatCompletionToolParam,
)
from openai.types.chat.chat_completion import Choice, ChoiceLogprobs
from openai.types.chat.chat_completion_message_function_tool_call import Function
from openai.types.chat.chat_completion_token_logprob import TopLogprob

from tests.conftest import Deployer
from tests.plugins.gateway.conftest import Served, served_gateway, write_config
from tests.plugins.gateway.sdk_upstream import SdkUpstream, completion_chunks, sdk_upstream, two_providers

TOOLS: list[ChatCompletionToolParam] = [
    {
        "type": "function",
        "function": {
            "name": "weather",
            "description": "the weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]


@dataclass
class Setup:
    oa: SdkUpstream
    an: SdkUpstream
    g: Served

    @property
    def sdk(self) -> openai.AsyncOpenAI:
        return self.g.sdk


@pytest.fixture
async def setup(deploy_app: Deployer, tmp_path: Path) -> AsyncIterator[Setup]:
    with sdk_upstream("oa") as (oa, oa_url), sdk_upstream("an") as (an, an_url):
        config = write_config(tmp_path, two_providers(oa_url, an_url))
        async with served_gateway(deploy_app, FAAS_GATEWAY_CONFIG=config, OA_KEY="sk-oa", AN_KEY="sk-an") as g:
            yield Setup(oa, an, g)


def _scripted_completion(body: dict[str, Any]) -> ChatCompletion:
    token = ChatCompletionTokenLogprob(
        token="Hi",
        bytes=[72, 105],
        logprob=-0.25,
        top_logprobs=[TopLogprob(token="Hi", bytes=[72, 105], logprob=-0.25)],
    )
    return ChatCompletion(
        id="chatcmpl-scripted",
        object="chat.completion",
        created=1700000000,
        model=body["model"],
        system_fingerprint="fp_test",
        choices=[
            Choice(
                index=0,
                finish_reason="tool_calls",
                logprobs=ChoiceLogprobs(content=[token], refusal=None),
                message=ChatCompletionMessage(
                    role="assistant",
                    content="Hi",
                    tool_calls=[
                        ChatCompletionMessageFunctionToolCall(
                            id="call_1",
                            type="function",
                            function=Function(name="weather", arguments='{"city": "Oslo"}'),
                        )
                    ],
                ),
            )
        ],
        usage=CompletionUsage(prompt_tokens=20, completion_tokens=5, total_tokens=25),
    )


MSGS: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello"}]


async def test_the_openai_path_is_exact_field_for_field_and_chunk_for_chunk(setup: Setup) -> None:
    setup.oa.reply_openai = _scripted_completion
    expected = _scripted_completion({"model": "gpt-test"})
    r = await setup.sdk.chat.completions.create(
        model="gpt",
        messages=MSGS,
        tools=TOOLS,
        logprobs=True,
        top_logprobs=1,
        seed=7,
        response_format={"type": "json_object"},
    )
    assert r.choices == expected.choices and r.usage == expected.usage
    assert r.system_fingerprint == "fp_test"
    sent = setup.oa.received[-1]
    assert sent["logprobs"] is True and sent["top_logprobs"] == 1 and sent["seed"] == 7
    assert sent["response_format"] == {"type": "json_object"} and sent["tools"] == TOOLS

    stream = await setup.sdk.chat.completions.create(
        model="gpt", messages=MSGS, tools=TOOLS, stream=True, stream_options={"include_usage": True}
    )
    chunks = [c async for c in stream]
    want = list(completion_chunks(expected, usage=True))
    assert [c.choices for c in chunks] == [w.choices for w in want]
    assert chunks[-1].usage == expected.usage


async def test_the_anthropic_path_answers_in_openai_types(setup: Setup) -> None:
    def reply(body: dict[str, Any]) -> at.Message:
        return at.Message(
            id="msg_x",
            type="message",
            role="assistant",
            model=body["model"],
            content=[
                at.TextBlock(type="text", text="Let me look."),
                at.ToolUseBlock(type="tool_use", id="toolu_1", name="weather", input={"city": "Oslo"}),
            ],
            stop_reason="tool_use",
            stop_sequence=None,
            usage=at.Usage(input_tokens=30, output_tokens=12),
        )

    setup.an.reply_anthropic = reply
    r = await setup.sdk.chat.completions.create(model="claude", messages=MSGS, tools=TOOLS)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content == "Let me look."
    call = (choice.message.tool_calls or [])[0]
    assert isinstance(call, ChatCompletionMessageFunctionToolCall)
    assert call.id == "toolu_1" and json.loads(call.function.arguments) == {"city": "Oslo"}
    assert r.usage is not None and (r.usage.prompt_tokens, r.usage.completion_tokens) == (30, 12)

    stream = await setup.sdk.chat.completions.create(
        model="claude", messages=MSGS, tools=TOOLS, stream=True, stream_options={"include_usage": True}
    )
    chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    args = "".join(
        (t.function.arguments or "") if t.function else ""
        for c in chunks
        if c.choices
        for t in c.choices[0].delta.tool_calls or []
    )
    assert text == "Let me look." and json.loads(args) == {"city": "Oslo"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 12
