"""The gateway's HTTP API with the gateway direct and remote (`mode`): the same test bodies, the same answers.

In remote mode the app the tests talk to runs the gateway remote and calls a second instance (gateway direct) on
127.0.0.1. Both are real uvicorn servers, so streaming is real; a provider on loopback holds its stream on a gate
the test opens, which shows each chunk crossing both hops as it comes, and a stream outlasting the service
client's deadline (FAAS_GATEWAY_CLIENT_DEADLINE) running to its end.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import numpy as np
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tests.conftest import ADMIN_KEY, Deployer, eventually, serve_app
from tests.harness import deploy
from tests.plugins.gateway.conftest import same_minute
from tests.plugins.gateway.test_ledger import counted, reservations_settled

CLIENT_DEADLINE = 0.5
MSG = [{"role": "user", "content": "hi"}]


def gated_provider(gate: asyncio.Event) -> Starlette:
    """An OpenAI-compatible provider whose stream sends `before`, waits for the gate, then sends ` after`
    (model `d` dies after `before` instead)."""

    async def chat(request: Request) -> Response:
        body = await request.json()

        def event(delta: dict[str, Any] | None, finish: str | None = None, usage: bool = False) -> bytes:
            chunk: dict[str, Any] = {"id": "chatcmpl-g", "object": "chat.completion.chunk", "created": 1}
            chunk["model"] = body["model"]
            chunk["choices"] = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
            if usage:
                chunk["usage"] = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
            return b"data: " + json.dumps(chunk).encode() + b"\n\n"

        async def events() -> AsyncIterator[bytes]:
            yield event({"role": "assistant", "content": ""})
            yield event({"content": "before"})
            if body["model"] == "d":
                raise RuntimeError("the provider dies mid-stream")
            await gate.wait()
            yield event({"content": " after"})
            yield event({}, "stop")
            yield event(None, usage=True)
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


@pytest.fixture
def gate() -> asyncio.Event:
    return asyncio.Event()


@pytest.fixture
async def gateway_url(deploy_app: Deployer, tmp_path: Path, gate: asyncio.Event) -> AsyncIterator[str]:
    """The URL the tests call: the gateway direct, or a front deployment with the gateway remote."""
    async with serve_app(gated_provider(gate)) as provider:
        config = tmp_path / "gateway.json"
        models = {
            "mock-1": {"deployments": [{"provider": "mock"}]},
            "gated": {"deployments": [{"provider": "openai", "model": "g", "base_url": f"{provider}/v1"}]},
            "dying": {"deployments": [{"provider": "openai", "model": "d", "base_url": f"{provider}/v1"}]},
        }
        config.write_text(json.dumps({"models": models}))
        env = {"FAAS_GATEWAY_CONFIG": str(config), "FAAS_GATEWAY_CLIENT_DEADLINE": str(CLIENT_DEADLINE)}
        async with deploy_app(plugins=("gateway", "cache"), remote=("gateway",), env=env, served="loop") as d:
            assert d.url is not None
            yield d.url


@pytest.fixture
async def admin(gateway_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway_url, headers={"authorization": f"Bearer {ADMIN_KEY}"}) as c:
        yield c


async def new_client(admin: httpx.AsyncClient) -> tuple[str, httpx.AsyncClient]:
    r = await admin.post("/api/v1/admin/tenants", json={"name": "t-" + secrets.token_hex(4)})
    assert r.status_code == 201, r.text
    tenant = r.json()
    headers = {"authorization": f"Bearer {tenant['api_key']}"}
    return tenant["tenant_id"], httpx.AsyncClient(base_url=str(admin.base_url), headers=headers, timeout=10)


@pytest.fixture
async def api(admin: httpx.AsyncClient) -> AsyncIterator[httpx.AsyncClient]:
    _, client = await new_client(admin)
    async with client:
        yield client


async def test_chat_in_both_dialects(api: httpx.AsyncClient) -> None:
    r = await api.post("/v1/chat/completions", json={"model": "mock-1", "messages": MSG})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["object"] == "chat.completion" and out["model"] == "mock-1"
    assert out["choices"][0]["message"] == {"role": "assistant", "content": "You said: hi"}
    assert out["usage"]["total_tokens"] == out["usage"]["prompt_tokens"] + out["usage"]["completion_tokens"] > 0
    chat = await api.post("/api/v1/gateway/chat", json={"model": "mock-1", "messages": MSG, "max_tokens": 1})
    assert chat.status_code == 200, chat.text
    assert chat.json()["message"]["content"] == "You" and chat.json()["finish_reason"] == "length"
    gen = await api.post("/api/v1/gateway/generate", json={"prompt": "ping", "system": "be brief"})
    assert gen.status_code == 200 and gen.json()["text"] == "You said: ping" and gen.json()["cached"] is False
    models = await api.get("/v1/models")
    assert {m["id"] for m in models.json()["data"]} == {"mock-1", "gated", "dying", "all-MiniLM-L6-v2"}


async def test_stream_crosses_chunk_by_chunk_and_may_outlast_the_client_deadline(
    api: httpx.AsyncClient, gate: asyncio.Event
) -> None:
    body = {"model": "gated", "messages": MSG, "stream": True, "stream_options": {"include_usage": True}}
    async with api.stream("POST", "/v1/chat/completions", json=body) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        lines = r.aiter_lines()
        seen: list[str] = []
        async with asyncio.timeout(5):
            while '"before"' not in "".join(seen):  # a buffering hop would hang here: the provider waits
                seen.append(await anext(lines))
        assert not gate.is_set()
        await asyncio.sleep(CLIENT_DEADLINE + 0.3)  # the stream now runs past the service client's deadline
        gate.set()
        seen += [line async for line in lines]
    data = [line.removeprefix("data: ") for line in seen if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "before after"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 5


async def test_a_stream_that_fails_midway_ends_with_an_error_event(api: httpx.AsyncClient) -> None:
    async with api.stream(
        "POST", "/v1/chat/completions", json={"model": "dying", "messages": MSG, "stream": True}
    ) as r:
        assert r.status_code == 200
        data = [line.removeprefix("data: ") async for line in r.aiter_lines() if line.startswith("data: ")]
    assert "[DONE]" not in data
    chunks = [json.loads(d) for d in data]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks[:-1]) == "before"
    assert chunks[-1]["error"]["type"] == "upstream_error" and chunks[-1]["error"]["message"]


async def test_embeddings_as_floats_and_base64(api: httpx.AsyncClient) -> None:
    floats = await api.post("/v1/embeddings", json={"input": ["hello world", "other"]})
    assert floats.status_code == 200, floats.text
    vectors = [d["embedding"] for d in sorted(floats.json()["data"], key=lambda d: d["index"])]
    assert [len(v) for v in vectors] == [384, 384] and vectors[0] != vectors[1]
    assert floats.json()["model"] == "all-MiniLM-L6-v2" and floats.json()["usage"]["prompt_tokens"] > 0
    b64 = await api.post("/v1/embeddings", json={"input": ["hello world", "other"], "encoding_format": "base64"})
    decoded = [np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in b64.json()["data"]]
    assert np.allclose(decoded, np.asarray(vectors, dtype="<f4"), atol=1e-6)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", {"model": "nope", "messages": MSG}),
        ("/v1/chat/completions", {"model": "nope", "messages": MSG, "stream": True}),
        ("/v1/embeddings", {"model": "nope", "input": "x"}),
    ],
)
async def test_unknown_model_is_the_same_openai_error(api: httpx.AsyncClient, path: str, body: dict[str, Any]) -> None:
    r = await api.post(path, json=body)
    assert r.status_code == 404, r.text
    problem = r.json()
    assert set(problem) == {
        "type",
        "title",
        "status",
        "detail",
        "request_id",
        "code",
        "param",
        "allowed_models",
        "error",
    }
    assert problem["type"] == "urn:faas:problem:not-found" and problem["request_id"] == r.headers["x-request-id"]
    assert problem["error"]["code"] == "model_not_found" and problem["error"]["param"] == "model"
    assert problem["error"]["type"] == "invalid_request_error" and "'nope'" in problem["error"]["message"]
    wanted = ["all-MiniLM-L6-v2"] if path == "/v1/embeddings" else ["mock-1", "gated", "dying"]
    assert sorted(problem["allowed_models"]) == sorted(wanted)


async def test_unknown_model_is_the_same_problem_on_the_platform_routes(api: httpx.AsyncClient) -> None:
    r = await api.post("/api/v1/gateway/chat", json={"model": "nope", "messages": MSG})
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert set(problem) == {
        "type",
        "title",
        "status",
        "detail",
        "instance",
        "request_id",
        "code",
        "param",
        "allowed_models",
    }
    assert problem["instance"] == "/api/v1/gateway/chat" and problem["code"] == "model_not_found"


async def test_usage_lands_with_the_calling_tenant(admin: httpx.AsyncClient) -> None:
    _, mine = await new_client(admin)
    _, theirs = await new_client(admin)
    async with mine, theirs:
        assert (await mine.post("/api/v1/gateway/generate", json={"prompt": "x"})).status_code == 200
        assert (await mine.post("/v1/embeddings", json={"input": "x"})).status_code == 200
        assert (await mine.post("/v1/chat/completions", json={"model": "nope", "messages": MSG})).status_code == 404

        async def recorded() -> None:
            rows = (await mine.get("/api/v1/gateway/usage")).json()["data"]
            assert sorted((r["model"], r["requests"], r["errors"]) for r in rows) == [
                ("all-MiniLM-L6-v2", 1, 0),
                ("mock-1", 1, 0),
            ]

        await recorded()  # committed before each answer went out
        assert (await theirs.get("/api/v1/gateway/usage")).json()["data"] == []
        bad = await mine.get("/api/v1/gateway/usage", params={"limit": 0})
        assert bad.status_code == 422 and bad.json()["errors"][0]["loc"] == ["query", "limit"]


async def test_an_admin_policy_applies_to_the_tenant(admin: httpx.AsyncClient) -> None:
    tenant_id, client = await new_client(admin)
    async with client:
        url = f"/api/v1/gateway/tenants/{tenant_id}/policy"
        r = await admin.put(url, json={"allowed_models": ["mock-1"], "rpm": 100})
        assert r.status_code == 200, r.text
        assert r.json()["allowed_models"] == ["mock-1"] and r.json()["tenant_id"] == tenant_id
        assert (await admin.get(url)).json()["rpm"] == 100
        assert [m["id"] for m in (await client.get("/v1/models")).json()["data"]] == ["mock-1"]
        refused = await client.post("/v1/chat/completions", json={"model": "gated", "messages": MSG})
        assert refused.status_code == 404 and refused.json()["allowed_models"] == ["mock-1"]
        assert (await client.put(url, json={"rpm": 1})).status_code == 401  # a tenant key is not the admin key
        missing = await admin.get("/api/v1/gateway/tenants/no-such-tenant/policy")
        assert missing.status_code == 404 and missing.json()["type"] == "urn:faas:problem:not-found"


async def test_a_gateway_error_behind_another_plugin_is_a_plain_problem(admin: httpx.AsyncClient) -> None:
    # The semantic cache embeds through the gateway (over its OpenAI route in remote mode); the gateway's refusal
    # reaches the cache's caller as the same problem, without the OpenAI rendering of it.
    tenant_id, client = await new_client(admin)
    async with client:
        r = await admin.put(f"/api/v1/gateway/tenants/{tenant_id}/policy", json={"rpm": 1})
        assert r.status_code == 200, r.text
        assert (await client.post("/api/v1/gateway/generate", json={"prompt": "x"})).status_code == 200
        lookup = {"request": {"model": "mock-1", "messages": MSG}, "semantic": True}
        r = await client.post("/api/v1/cache/-/responses/lookup", json=lookup)
    assert r.status_code == 429 and r.headers["content-type"].startswith("application/problem+json")
    assert int(r.headers["retry-after"]) >= 1
    problem = r.json()
    assert (
        problem["type"] == "urn:faas:problem:rate-limited" and problem["instance"] == "/api/v1/cache/-/responses/lookup"
    )
    assert "error" not in problem and problem["code"] == "rate_limit_exceeded"


async def test_a_remote_gateway_allows_llm_length_calls(database_url: str) -> None:
    """The remote gateway's client waits minutes, not the service client's 10 s default, for a completion."""
    async with deploy(database_url, mode="remote", plugins=("gateway",)) as d:
        options = d.state["clients"].get_client("gateway").options
        assert options.timeout >= 120 and options.deadline >= 300


# --- bad input is the client's 4xx, never a 500 -------------------------------------------------------------


async def test_usage_at_either_end_of_the_calendar_is_an_empty_page(admin: httpx.AsyncClient) -> None:
    # Year 1 was a 500 (its default start, 30 days earlier, is no date). Any date is a valid bound: the range has
    # no usage, like any other without any.
    _, c = await new_client(admin)
    async with c:
        for params in (
            {"until": "0001-01-01"},
            {"until": "0001-01-30"},
            {"since": "0001-01-01"},
            {"since": "0001-01-01", "until": "9999-12-31"},
            {"until": "9999-12-31"},
        ):
            r = await c.get("/api/v1/gateway/usage", params=params)
            assert r.status_code == 200 and r.json() == {"data": [], "next_cursor": None}, (params, r.text)


BAD_MESSAGES: list[dict[str, Any]] = [
    # The case: a text part whose text is a number.
    {"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]},
    {"messages": [{"role": "user", "content": [{"text": "no type"}]}]},
    {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "https://x/y.png"}]}]},
    {"messages": [{"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": "f"}]}]},
    {"messages": [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": 5}}]}]},
    {"tools": [{"type": "function", "function": "get_weather"}]},
    {"tools": [{"type": "function", "function": {"name": "f", "parameters": ["city"]}}]},
    {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"properties": {"city": "str"}}}}]},
    {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"required": "city"}}}]},
    {"tool_choice": {"type": "function", "function": "f"}},
]


async def test_malformed_messages_and_tools_are_4xx(admin: httpx.AsyncClient) -> None:
    _, c = await new_client(admin)
    async with c:
        for bad in BAD_MESSAGES:
            body = {"model": "mock-1", "messages": MSG, **bad}
            r = await c.post("/api/v1/gateway/chat", json=body)
            assert r.status_code == 422 and r.json()["type"] == "urn:faas:problem:invalid-input", (bad, r.text)
            r = await c.post("/v1/chat/completions", json=body)
            assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error", (bad, r.text)
        r = await c.post("/v1/chat/completions", json={"model": "mock-1", "messages": MSG, "stop": 5})
        assert r.status_code == 400, r.text
        # What is well-formed still works: parts, tools and tool calls as the OpenAI API has them.
        fine = {
            "model": "mock-1",
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "weather?"}]},
                {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "w"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
            ],
            "tools": [{"type": "function", "function": {"name": "w", "parameters": {"properties": {}}}}],
            "tool_choice": {"type": "function", "function": {"name": "w"}},
            "stop": ["\n\n"],
        }
        r = await c.post("/v1/chat/completions", json=fine)
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "The tool returned: sunny"


async def test_a_client_that_leaves_a_stream_settles_it_and_leaves_a_row(
    admin: httpx.AsyncClient, database_url: str
) -> None:
    tenant_id, client = await new_client(admin)
    await counted(admin, tenant_id)
    await same_minute(seconds_needed=15)
    body = {"model": "gated", "messages": MSG, "stream": True, "max_tokens": 1000}
    async with client:
        async with client.stream("POST", "/v1/chat/completions", json=body) as r:
            assert r.status_code == 200
            seen = ""
            async with asyncio.timeout(5):
                async for line in r.aiter_lines():
                    seen += line
                    if '"before"' in seen:
                        break  # leave mid-stream: the provider still holds the rest
    conn = await asyncpg.connect(database_url)
    try:

        async def recorded() -> None:
            rows = await conn.fetch("SELECT status, stream, error FROM gateway_usage WHERE tenant_id = $1", tenant_id)
            assert [(row["status"], row["stream"]) for row in rows] == [(499, True)], rows
            held, used = await reservations_settled(conn, tenant_id)
            assert held == used < 1000

        await eventually(recorded)
    finally:
        await conn.close()
