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
from tests.plugins.gateway.sdk_upstream import (
    SdkUpstream,
    anthropic_error,
    completion_chunks,
    openai_error,
    sdk_upstream,
    two_providers,
)

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


async def refused(sdk: openai.AsyncOpenAI, **kw: Any) -> dict[str, Any]:
    """The OpenAI error body of a request the gateway refuses with a 400."""
    kw.setdefault("model", "claude")
    with pytest.raises(openai.BadRequestError) as err:
        await sdk.chat.completions.create(**kw)
    body = err.value.body
    assert isinstance(body, dict) and err.value.status_code == 400, body
    return body


# ---- broken before: each of these was the provider's 400 (or the gateway's) --------------------------------------


async def test_an_empty_earlier_assistant_message_is_left_out_not_sent_empty(setup: Setup) -> None:
    msgs: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": "second"},
    ]
    for stream in (False, True):
        r = await setup.sdk.chat.completions.create(model="claude", messages=msgs, stream=stream)
        if stream:
            text = "".join([c.choices[0].delta.content or "" async for c in r if c.choices])  # type: ignore[union-attr]
        else:
            text = r.choices[0].message.content or ""  # type: ignore[union-attr]
        assert text == "an says: first second"
        assert setup.an.received[-1]["messages"] == [
            {"role": "user", "content": [{"type": "text", "text": "first"}, {"type": "text", "text": "second"}]}
        ]


async def test_audio_only_and_file_id_messages_are_refused_naming_the_part_and_the_model(setup: Setup) -> None:
    audio: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]}
    ]
    body = await refused(setup.sdk, messages=audio)
    assert body["param"] == "messages[0].content[0]" and body["code"] == "unsupported_parameter"
    assert "claude" in body["message"] and "audio" in body["message"]
    by_id: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": [{"type": "file", "file": {"file_id": "file-123"}}]}
    ]
    body = await refused(setup.sdk, messages=by_id, stream=True)
    assert body["param"] == "messages[0].content[0]" and "claude" in body["message"]
    assert setup.an.received == []  # nothing reached the provider
    # A PDF given inline has an equivalent: a document block.
    pdf: list[ChatCompletionMessageParam] = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "summarise"},
                {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}},
            ],
        }
    ]
    await setup.sdk.chat.completions.create(model="claude", messages=pdf)
    assert setup.an.received[-1]["messages"][0]["content"][1] == {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="},
        "title": "a.pdf",
    }


async def test_a_temperature_above_anthropics_range_is_refused_by_the_gateway(setup: Setup) -> None:
    body = await refused(setup.sdk, messages=MSGS, temperature=1.5)
    assert body["param"] == "temperature" and body["code"] == "unsupported_parameter"
    assert "claude" in body["message"] and "1.5" in body["message"]
    assert setup.an.received == []
    # The same value is valid for OpenAI, and goes there as it came.
    await setup.sdk.chat.completions.create(model="gpt", messages=MSGS, temperature=1.5)
    assert setup.oa.received[-1]["temperature"] == 1.5


async def test_n_choices_pass_through_to_openai_and_fan_out_to_anthropic_metered_per_choice(setup: Setup) -> None:
    r = await setup.sdk.chat.completions.create(model="gpt", messages=MSGS, n=2)
    assert [c.message.content for c in r.choices] == ["oa says: hello #0", "oa says: hello #1"]
    assert setup.oa.received[-1]["n"] == 2 and len(setup.oa.received) == 1

    r = await setup.sdk.chat.completions.create(model="claude", messages=MSGS, n=3)
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert {c.message.content for c in r.choices} == {"an says: hello"}
    assert len(setup.an.received) == 3 and all("n" not in b for b in setup.an.received)
    assert r.usage is not None and (r.usage.prompt_tokens, r.usage.completion_tokens) == (39, 27)

    stream = await setup.sdk.chat.completions.create(
        model="claude", messages=MSGS, n=2, stream=True, stream_options={"include_usage": True}
    )
    chunks = [c async for c in stream]
    assert len({c.id for c in chunks}) == 1
    for i in (0, 1):
        text = "".join(ch.delta.content or "" for c in chunks for ch in c.choices if ch.index == i)
        assert text == "an says: hello"
        assert [ch.finish_reason for c in chunks for ch in c.choices if ch.index == i][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 18
    assert len(setup.an.received) == 5

    rows = (await setup.g.http.get("/api/v1/gateway/usage")).json()["data"]
    claude = next(row for row in rows if row["model"] == "claude")
    # Every choice is metered: 3 + 2 calls of 13 prompt and 9 completion tokens.
    assert (claude["requests"], claude["prompt_tokens"], claude["completion_tokens"]) == (2, 65, 45)
    gpt = next(row for row in rows if row["model"] == "gpt")
    assert gpt["completion_tokens"] == 14


# ---- the rule: translated when Anthropic has an equivalent ------------------------------------------------------


async def test_structured_output_strict_tools_and_the_parallel_switch_are_translated(setup: Setup) -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "integer"}},
        "required": ["a"],
        "additionalProperties": False,
    }
    strict_tools: list[ChatCompletionToolParam] = [
        {"type": "function", "function": {**TOOLS[0]["function"], "strict": True}}
    ]
    await setup.sdk.chat.completions.create(
        model="claude",
        messages=MSGS,
        tools=strict_tools,
        parallel_tool_calls=False,
        response_format={"type": "json_schema", "json_schema": {"name": "out", "schema": schema, "strict": True}},
    )
    sent = setup.an.received[-1]
    assert sent["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    assert sent["tools"][0]["strict"] is True and sent["tools"][0]["input_schema"] == TOOLS[0]["function"]["parameters"]
    assert sent["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    await setup.sdk.chat.completions.create(
        model="claude",
        messages=MSGS,
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "weather"}},
        parallel_tool_calls=False,
    )
    assert setup.an.received[-1]["tool_choice"] == {
        "type": "tool",
        "name": "weather",
        "disable_parallel_tool_use": True,
    }
    body = await refused(setup.sdk, messages=MSGS, response_format={"type": "json_object"})
    assert body["param"] == "response_format"


async def test_tool_results_as_text_parts_stay_separate_blocks(setup: Setup) -> None:
    msgs: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "toolu_1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}],
        },
        {
            "role": "tool",
            "tool_call_id": "toolu_1",
            "content": [{"type": "text", "text": "sunny"}, {"type": "text", "text": "22C"}],
        },
    ]
    await setup.sdk.chat.completions.create(model="claude", messages=msgs, tools=TOOLS)
    assert setup.an.received[-1]["messages"][2] == {
        "role": "user",
        "content": [
            {
                "type": "tool_result",
                "tool_use_id": "toolu_1",
                "content": [{"type": "text", "text": "sunny"}, {"type": "text", "text": "22C"}],
            }
        ],
    }
    bad = [
        *msgs[:1],
        {
            **msgs[1],
            "tool_calls": [{"id": "t", "type": "function", "function": {"name": "weather", "arguments": "not json"}}],
        },
    ]
    body = await refused(setup.sdk, messages=bad, tools=TOOLS)
    assert body["param"] == "messages[1].tool_calls[0].function.arguments"


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [("refusal", "content_filter"), ("model_context_window_exceeded", "length"), ("max_tokens", "length")],
)
async def test_stop_reasons_keep_their_meaning(setup: Setup, stop_reason: str, finish: str) -> None:
    setup.an.reply_anthropic = lambda b: at.Message(
        id="msg_r",
        type="message",
        role="assistant",
        model=b["model"],
        content=[at.TextBlock(type="text", text="partial")],
        stop_reason=stop_reason,  # type: ignore[arg-type]
        stop_sequence=None,
        usage=at.Usage(input_tokens=3, output_tokens=1),
    )
    r = await setup.sdk.chat.completions.create(model="claude", messages=MSGS)
    assert r.choices[0].finish_reason == finish
    stream = await setup.sdk.chat.completions.create(model="claude", messages=MSGS, stream=True)
    assert [c.choices[0].finish_reason async for c in stream if c.choices][-1] == finish


# ---- the rule: refused, naming the field and the model, when Anthropic has no equivalent ------------------------


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"seed": 7}, "seed"),
        ({"logprobs": True, "top_logprobs": 2}, "logprobs"),
        ({"frequency_penalty": 0.5}, "frequency_penalty"),
        ({"logit_bias": {"50256": -100}}, "logit_bias"),
    ],
)
async def test_fields_without_an_equivalent_are_refused(setup: Setup, extra: dict[str, Any], param: str) -> None:
    body = await refused(setup.sdk, messages=MSGS, **extra)
    assert body["param"] == param and body["code"] == "unsupported_parameter"
    assert "model claude" in body["message"] and f"`{param}`" in body["message"]
    assert setup.an.received == []
    # Neutral values ask for nothing, and pass.
    await setup.sdk.chat.completions.create(model="claude", messages=MSGS, logprobs=False, frequency_penalty=0)


async def test_a_system_message_mid_conversation_is_refused(setup: Setup) -> None:
    msgs: list[ChatCompletionMessageParam] = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "developer", "content": "now be verbose"},
        {"role": "user", "content": "c"},
    ]
    body = await refused(setup.sdk, messages=msgs)
    assert body["param"] == "messages[3].role" and "claude" in body["message"]
    await setup.sdk.chat.completions.create(model="claude", messages=[msgs[0], msgs[1]])
    assert setup.an.received[-1]["system"] == "be brief"


async def test_the_operator_may_let_a_model_drop_what_it_cannot_translate(deploy_app: Deployer, tmp_path: Path) -> None:
    with sdk_upstream("oa") as (_, oa_url), sdk_upstream("an") as (an, an_url):
        config = write_config(tmp_path, two_providers(oa_url, an_url, drop_unsupported=True))
        async with served_gateway(deploy_app, FAAS_GATEWAY_CONFIG=config, OA_KEY="k", AN_KEY="k") as g:
            msgs: list[ChatCompletionMessageParam] = [
                {"role": "user", "content": "a"},
                {"role": "assistant", "content": "b"},
                {"role": "system", "content": "late"},
                {"role": "user", "content": "c"},
            ]
            r = await g.sdk.chat.completions.create(model="claude", messages=msgs, seed=3, temperature=1.7)
            assert r.choices[0].message.content == "an says: c"
            sent = an.received[-1]
            assert "seed" not in sent and sent["temperature"] == 1
            assert sent["system"] == "late"


# ---- errors keep their meaning ---------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
async def test_an_openai_upstream_error_keeps_its_type_code_and_param_but_not_its_words(
    setup: Setup, stream: bool
) -> None:
    setup.oa.fail = openai_error(
        400,
        "Invalid 'temperature' for org-secret123 on deployment internal-east",
        type="invalid_request_error",
        code="invalid_value",
        param="temperature",
    )
    with pytest.raises(openai.BadRequestError) as err:
        await setup.sdk.chat.completions.create(model="gpt", messages=MSGS, temperature=0.3, stream=stream)
    body = err.value.body
    assert isinstance(body, dict)
    assert (body["type"], body["code"], body["param"]) == ("invalid_request_error", "invalid_value", "temperature")
    assert err.value.code == "invalid_value" and err.value.param == "temperature"
    assert "model gpt" in body["message"] and "temperature" in body["message"]
    for hidden in ("org-secret123", "internal-east", "gpt-test", "gpt#0"):
        assert hidden not in body["message"]


@pytest.mark.parametrize(
    ("error", "code", "type_"),
    [
        (
            openai_error(429, "Rate limit reached for org-secret123", type="requests", code="rate_limit_exceeded"),
            "rate_limit_exceeded",
            "requests",
        ),
        (
            openai_error(429, "You exceeded your quota", type="insufficient_quota", code="insufficient_quota"),
            "insufficient_quota",
            "insufficient_quota",
        ),
    ],
)
async def test_an_openai_rate_limit_keeps_its_code(setup: Setup, error: Any, code: str, type_: str) -> None:
    setup.oa.fail = error
    with pytest.raises(openai.RateLimitError) as err:
        await setup.sdk.chat.completions.create(model="gpt", messages=MSGS)
    body = err.value.body
    assert isinstance(body, dict) and (body["code"], body["type"]) == (code, type_)
    assert "org-secret123" not in body["message"]


async def test_an_anthropic_error_means_the_same_through_the_openai_route(setup: Setup) -> None:
    setup.an.fail = anthropic_error(
        429, "Number of request tokens has exceeded your rate limit", type="rate_limit_error"
    )
    with pytest.raises(openai.RateLimitError) as err:
        await setup.sdk.chat.completions.create(model="claude", messages=MSGS)
    body = err.value.body
    assert isinstance(body, dict) and (body["type"], body["code"]) == ("rate_limit_error", "rate_limit_exceeded")
    setup.an.fail = anthropic_error(400, "messages.0: something the provider disliked")
    with pytest.raises(openai.BadRequestError) as err2:
        await setup.sdk.chat.completions.create(model="claude", messages=MSGS)
    body = err2.value.body
    assert isinstance(body, dict) and body["type"] == "invalid_request_error" and "disliked" not in body["message"]
