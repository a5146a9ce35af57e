"""The same test bodies with the gateway direct and remote (the front app calling a second instance over HTTP):
OpenAI routes, streaming, embeddings, platform routes, and identical errors in both modes."""

from __future__ import annotations

import json
from typing import Any

import httpx


async def test_chat_stream_embeddings_in_both_modes(api: httpx.AsyncClient, mode: str) -> None:
    msg = [{"role": "user", "content": "both modes"}]
    r = await api.post("/v1/chat/completions", json={"model": "mock-1", "messages": msg})
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "You said: both modes"
    s = await api.post("/v1/chat/completions", json={"model": "mock-1", "messages": msg, "stream": True})
    events = [line[6:] for line in s.text.splitlines() if line.startswith("data: ")]
    assert s.headers["content-type"].startswith("text/event-stream") and events[-1] == "[DONE]"
    text = "".join(json.loads(e)["choices"][0]["delta"].get("content") or "" for e in events[:-1])
    assert text == "You said: both modes"
    e = await api.post("/v1/embeddings", json={"input": ["alpha", "beta"], "encoding_format": "float"})
    assert [len(d["embedding"]) for d in e.json()["data"]] == [384, 384]
    g = await api.post("/api/v1/gateway/generate", json={"prompt": "hi"})
    assert g.json()["text"] == "You said: hi"
    models = (await api.get("/v1/models")).json()
    assert {m["id"] for m in models["data"]} == {"mock-1", "all-MiniLM-L6-v2"}

    async def four_requests_recorded() -> None:
        usage = (await api.get("/api/v1/gateway/usage")).json()["data"]
        assert sum(row["requests"] for row in usage) == 4

    await four_requests_recorded()  # each call's usage was committed before its answer went out


async def test_errors_are_the_same_in_both_modes(api: httpx.AsyncClient) -> None:
    r = await api.post("/v1/chat/completions", json={"model": "nope", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 404
    body: dict[str, Any] = r.json()
    assert body["error"]["code"] == "model_not_found" and "mock-1" in body["error"]["message"]
    assert body["type"] == "urn:faas:problem:not-found"
    p = await api.post("/api/v1/gateway/chat", json={"model": "nope", "messages": [{"role": "user", "content": "x"}]})
    assert p.status_code == 404 and "mock-1" in p.json()["detail"]
    bad = await api.post("/v1/embeddings", json={"input": []})
    assert bad.status_code == 400 and bad.json()["error"]["param"].startswith("input")
