"""`POST /v1/responses` (stateless) driven by the official `openai` SDK, for models on an OpenAI-compatible and an
Anthropic provider and the mock, streaming and not, in both plugin modes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic.types as at
import openai
import pytest
from openai.types.responses import FunctionToolParam, Response, ResponseFunctionToolCall, ResponseInputParam

from tests.conftest import Deployer
from tests.plugins.gateway.conftest import Served, served_gateway, write_config
from tests.plugins.gateway.sdk_upstream import SdkUpstream, sdk_upstream, two_providers

TOOLS: list[FunctionToolParam] = [
    {
        "type": "function",
        "name": "weather",
        "description": "the weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        "strict": True,
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


@pytest.mark.parametrize(
    ("model", "want"), [("gpt", "oa says: hi"), ("claude", "an says: hi"), ("mock-1", "You said: hi")]
)
async def test_text_in_text_out_for_any_model(setup: Setup, model: str, want: str) -> None:
    r = await setup.sdk.responses.create(model=model, input="hi", instructions="be brief", store=False)
    assert r.output_text == want and r.status == "completed" and r.object == "response"
    assert r.usage is not None and r.usage.input_tokens > 0 and r.usage.output_tokens > 0
    raw = await setup.g.http.post("/v1/responses", json={"model": model, "input": "hi"})
    Response.model_validate(raw.json())  # strictly the SDK's type, not only what its lenient parser accepts
    if model == "gpt":
        assert setup.oa.received[-2]["messages"] == [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hi"},
        ]
    if model == "claude":
        assert setup.an.received[-2]["system"] == "be brief"


@pytest.mark.parametrize("model", ["gpt", "claude"])
async def test_the_stream_is_typed_events_ending_in_the_whole_response(setup: Setup, model: str) -> None:
    stream = await setup.sdk.responses.create(model=model, input="one two three", stream=True)
    events = [e async for e in stream]
    kinds = [e.type for e in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text.endswith("says: one two three")
    done = events[-1]
    assert done.type == "response.completed" and done.response.output_text == text
    assert done.response.usage is not None and done.response.usage.output_tokens > 0
    async with setup.sdk.responses.stream(model=model, input="one two three") as s:
        final = await s.get_final_response()
    assert final.output_text == text


def _tool_message(body: dict[str, Any]) -> at.Message:
    last = body["messages"][-1]["content"]
    done = any(b.get("type") == "tool_result" for b in last if isinstance(b, dict))
    content: list[Any] = (
        [at.TextBlock(type="text", text="it is sunny")]
        if done
        else [at.ToolUseBlock(type="tool_use", id="toolu_7", name="weather", input={"city": "Oslo"})]
    )
    return at.Message(
        id="m",
        type="message",
        role="assistant",
        model=body["model"],
        content=content,
        stop_reason="end_turn" if done else "tool_use",
        stop_sequence=None,
        usage=at.Usage(input_tokens=4, output_tokens=2),
    )


@pytest.mark.parametrize("stream", [False, True])
async def test_function_calls_and_their_outputs_round_trip(setup: Setup, stream: bool) -> None:
    setup.an.reply_anthropic = _tool_message
    items: ResponseInputParam = [{"role": "user", "content": "weather in Oslo?"}]
    r: Response
    if stream:
        async with setup.sdk.responses.stream(model="claude", input=items, tools=TOOLS) as s:
            r = await s.get_final_response()
    else:
        r = await setup.sdk.responses.create(model="claude", input=items, tools=TOOLS)
    call = next(o for o in r.output if isinstance(o, ResponseFunctionToolCall))
    assert call.name == "weather" and json.loads(call.arguments) == {"city": "Oslo"} and call.call_id == "toolu_7"
    assert setup.an.received[-1]["tools"][0]["strict"] is True
    items += [
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"},
    ]
    r2 = await setup.sdk.responses.create(model="claude", input=items, tools=TOOLS)
    assert r2.output_text == "it is sunny"
    assert setup.an.received[-1]["messages"][-1] == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "toolu_7", "content": "sunny"}],
    }


async def test_nothing_is_stored_so_stored_state_is_refused(setup: Setup) -> None:
    for kw, param in (({"store": True}, "store"), ({"previous_response_id": "resp_1"}, "previous_response_id")):
        with pytest.raises(openai.BadRequestError) as err:
            await setup.sdk.responses.create(model="gpt", input="x", **kw)
        body = err.value.body
        assert isinstance(body, dict) and body["param"] == param and body["code"] == "unsupported_parameter"
    with pytest.raises(openai.BadRequestError) as err:
        await setup.sdk.responses.create(model="gpt", input="x", tools=[{"type": "web_search"}])
    assert isinstance(err.value.body, dict) and err.value.body["param"] == "tools[0].type"
    with pytest.raises(openai.NotFoundError):
        await setup.sdk.responses.create(model="nope", input="x")
    rows = (await setup.g.http.get("/api/v1/gateway/usage")).json()["data"]
    assert all(row["model"] != "gpt" for row in rows)  # refused before any provider call: nothing metered


async def test_responses_are_metered(setup: Setup) -> None:
    await setup.sdk.responses.create(model="gpt", input="x")
    async with setup.sdk.responses.stream(model="gpt", input="y") as s:
        await s.get_final_response()
    rows = (await setup.g.http.get("/api/v1/gateway/usage")).json()["data"]
    gpt = next(row for row in rows if row["model"] == "gpt")
    assert (gpt["requests"], gpt["prompt_tokens"], gpt["completion_tokens"]) == (2, 22, 14)
