"""The official openai SDK against a real gateway on 127.0.0.1, with no provider configured (mock + local)."""

from __future__ import annotations

import json

import openai
import pytest

from tests.plugins.gateway.conftest import gateway, tenant_key


@pytest.fixture
def sdk(database_url: str):  # type: ignore[no-untyped-def]
    with gateway(database_url) as url:
        key = tenant_key(url)["api_key"]
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
        yield client
        client.close()


def test_chat_completion_with_mock_model(sdk: openai.OpenAI) -> None:
    r = sdk.chat.completions.create(model="mock-1", messages=[{"role": "user", "content": "hello there"}])
    assert r.choices[0].message.content == "You said: hello there"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage is not None and r.usage.completion_tokens == 4 and r.usage.prompt_tokens > 0


def test_streaming_with_usage(sdk: openai.OpenAI) -> None:
    stream = sdk.chat.completions.create(
        model="mock-1",
        messages=[{"role": "user", "content": "one two three"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "You said: one two three"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


def test_stream_without_include_usage_has_no_usage_chunk(sdk: openai.OpenAI) -> None:
    chunks = list(sdk.chat.completions.create(model="mock-1", messages=[{"role": "user", "content": "x"}], stream=True))
    assert all(c.choices for c in chunks)


def test_tool_calling_round_trip(sdk: openai.OpenAI) -> None:
    tools = [
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
    messages: list = [{"role": "user", "content": "Paris"}]
    r = sdk.chat.completions.create(model="mock-1", messages=messages, tools=tools)
    call = r.choices[0].message.tool_calls[0]
    assert r.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris", "days": 1}
    messages += [
        r.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
    ]
    r2 = sdk.chat.completions.create(model="mock-1", messages=messages, tools=tools)
    assert r2.choices[0].message.content == "The tool returned: sunny"
    # Streamed tool calls reassemble into the same call.
    chunks = list(sdk.chat.completions.create(model="mock-1", messages=messages[:1], tools=tools, stream=True))
    args = "".join(
        tc.function.arguments or "" for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []
    )
    assert json.loads(args) == {"city": "Paris", "days": 1}


def test_embeddings_local_model_base64_and_float(sdk: openai.OpenAI) -> None:
    r = sdk.embeddings.create(model="all-MiniLM-L6-v2", input=["a cat on a mat", "a kitten on a rug", "tax law"])
    vecs = [d.embedding for d in r.data]
    assert [len(v) for v in vecs] == [384, 384, 384]

    def cos(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert abs(cos(vecs[0], vecs[0]) - 1) < 1e-4
    assert cos(vecs[0], vecs[1]) > 0.5 > cos(vecs[0], vecs[2])
    r2 = sdk.embeddings.create(model="all-MiniLM-L6-v2", input="a cat on a mat", encoding_format="float")
    assert max(abs(a - b) for a, b in zip(r2.data[0].embedding, vecs[0], strict=True)) < 1e-6
    assert r.usage.prompt_tokens > 0


def test_models_and_unknown_model_error(sdk: openai.OpenAI) -> None:
    names = {m.id for m in sdk.models.list()}
    assert names == {"mock-1", "all-MiniLM-L6-v2"}
    with pytest.raises(openai.NotFoundError) as err:
        sdk.chat.completions.create(model="gpt-nope", messages=[{"role": "user", "content": "x"}])
    body = err.value.body
    assert isinstance(body, dict) and body["code"] == "model_not_found" and "mock-1" in body["message"]


def test_errors_are_openai_shaped(sdk: openai.OpenAI, database_url: str) -> None:
    bad = openai.OpenAI(base_url=str(sdk.base_url), api_key="faas_wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as err:
        bad.models.list()
    assert err.value.status_code == 401 and isinstance(err.value.body, dict) and err.value.body["type"]
    with pytest.raises(openai.BadRequestError) as err2:
        sdk.chat.completions.create(model="mock-1", messages=[])
    assert isinstance(err2.value.body, dict) and err2.value.body["param"] == "messages"
    bad.close()
