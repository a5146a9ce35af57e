"""Requests whose answer or parsing would cost far more than their size are refused before any work, in both
gateway modes, with a 4xx that names the limit: `dimensions`, inputs x dimensions, messages, and JSON values."""

from __future__ import annotations

import json

import asyncpg
import httpx
import pytest

from app.json_limits import json_values
from tests.harness import Tenant


async def _no_usage(database_url: str, tenant_id: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM gateway_usage WHERE tenant_id = $1", tenant_id) == 0
    finally:
        await conn.close()


async def test_embeddings_answer_size_is_bounded(api: httpx.AsyncClient, tenant: Tenant, database_url: str) -> None:
    many = ["short"] * 2048
    r = await api.post("/v1/embeddings", json={"input": many, "dimensions": 8192})
    assert r.status_code == 400 and r.json()["error"]["param"] == "dimensions"
    assert "3072" in r.json()["error"]["message"]
    r = await api.post("/v1/embeddings", json={"input": many, "dimensions": 3072})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "output_too_large" and "1,048,576" in error["message"] and "at most 341" in error["message"]
    await _no_usage(database_url, tenant.tenant_id)  # refused before reserving or embedding anything
    ok = await api.post("/v1/embeddings", json={"input": ["a", "b"] * 8, "dimensions": 1024})
    assert ok.status_code == 200, ok.text
    vectors = [d["embedding"] for d in ok.json()["data"]]
    assert len(vectors) == 16 and {len(v) for v in vectors} == {1024} and vectors[0][384:] == [0.0] * 640


async def test_chat_bodies_of_tiny_messages_are_bounded(
    api: httpx.AsyncClient, tenant: Tenant, database_url: str
) -> None:
    tiny = {"role": "user"}
    flood = json.dumps({"model": "mock-1", "messages": [tiny] * 600_000}, separators=(",", ":"))
    assert len(flood) < 10 * 2**20  # 9.6 MB, under the body size limit: only the value budget stops it
    r = await api.post("/v1/chat/completions", content=flood, headers={"content-type": "application/json"})
    assert r.status_code == 413, r.text
    assert r.json()["error"]["code"] == "too_many_values" and "100,000" in r.json()["error"]["message"]
    r = await api.post("/v1/chat/completions", json={"model": "mock-1", "messages": [tiny] * 10_001})
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"
    p = await api.post("/api/v1/gateway/chat", content=flood, headers={"content-type": "application/json"})
    assert p.status_code == 413 and p.headers["content-type"] == "application/problem+json"
    await _no_usage(database_url, tenant.tenant_id)
    most = [{**tiny, "content": "h"}] * 10_000
    ok = await api.post("/v1/chat/completions", json={"model": "mock-1", "messages": most})
    assert ok.status_code == 200, ok.text


@pytest.mark.parametrize(
    "value",
    [
        {"a": 1, "b": [1, 2, {"c": 'x,y{["\\'}], "d": {}},
        [[], [[]], ""],
        {"messages": [{"role": "user", "content": 'he said "hi, {there}" \\ ok'}] * 50},
        "a, string [with] {separators}",
    ],
)
def test_json_values_tells_whether_a_body_is_over_a_limit(value: object) -> None:
    def count(v: object) -> int:
        if isinstance(v, dict):
            return 1 + sum(count(x) for x in v.values())
        if isinstance(v, list):
            return 1 + sum(count(x) for x in v)
        return 1

    raw = json.dumps(value)
    exact = count(value)
    empty = raw.count("[]") + raw.count("{}")  # counted twice
    assert exact <= json_values(raw)
    assert json_values(raw, limit=exact - 1) > exact - 1
    assert json_values(raw, limit=exact + empty) <= exact + empty
