"""The LLM-response cache as the gateway calls it (`services.cache`), against both backends."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from app.errors import Unavailable

REQUEST: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"}],
    "temperature": 0.0,
}
RESPONSE = {"id": "chatcmpl-1", "object": "chat.completion", "choices": [{"message": {"content": "4"}}]}


async def test_exact_lookup_misses_then_hits_after_store(cache: Any, tenants: list[dict[str, str]]) -> None:
    t = tenants[0]["tenant_id"]
    assert await cache.lookup_response(tenant_id=t, request=REQUEST) is None
    await cache.store_response(tenant_id=t, request=REQUEST, response=RESPONSE, ttl_seconds=60)
    hit = await cache.lookup_response(tenant_id=t, request=REQUEST)
    assert hit is not None and hit.response == RESPONSE and hit.similarity is None


async def test_fields_that_do_not_change_the_answer_share_the_entry(cache: Any, tenants: list[dict[str, str]]) -> None:
    t = tenants[0]["tenant_id"]
    await cache.store_response(tenant_id=t, request=REQUEST, response=RESPONSE, ttl_seconds=60)
    same = {**REQUEST, "stream": True, "metadata": {"k": "v"}, "cache": {"ttl": 5}, "temperature": 0, "top_p": None}
    reordered = dict(reversed(list(same.items())))
    for request in (same, reordered):
        assert await cache.lookup_response(tenant_id=t, request=request) is not None


@pytest.mark.parametrize(
    "change",
    [
        {"model": "gpt-4o"},
        {"temperature": 0.7},
        {"max_tokens": 5},
        {"seed": 1},
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]},
        {"response_format": {"type": "json_object"}},
        {"user": "u-42"},  # one end user's answer is not another's (the gateway drops `user` for per_user false)
        {"messages": [{"role": "user", "content": "What is 2+2?"}]},
        {"messages": [{"role": "system", "content": "Be verbose."}, {"role": "user", "content": "What is 2+2?"}]},
    ],
)
async def test_fields_that_change_the_answer_miss(
    cache: Any, tenants: list[dict[str, str]], change: dict[str, Any]
) -> None:
    t = tenants[0]["tenant_id"]
    await cache.store_response(tenant_id=t, request=REQUEST, response=RESPONSE, ttl_seconds=60)
    assert await cache.lookup_response(tenant_id=t, request={**REQUEST, **change}) is None


async def test_responses_are_per_tenant_and_expire(cache: Any, tenants: list[dict[str, str]]) -> None:
    mine, theirs = (t["tenant_id"] for t in tenants)
    await cache.store_response(tenant_id=mine, request=REQUEST, response=RESPONSE, ttl_seconds=1)
    assert await cache.lookup_response(tenant_id=theirs, request=REQUEST) is None
    assert await cache.lookup_response(tenant_id=mine, request=REQUEST) is not None
    await asyncio.sleep(1.1)
    assert await cache.lookup_response(tenant_id=mine, request=REQUEST) is None


async def test_lookups_are_counted_per_tenant(cache: Any, tenants: list[dict[str, str]]) -> None:
    t = tenants[0]["tenant_id"]
    await cache.lookup_response(tenant_id=t, request=REQUEST)
    await cache.store_response(tenant_id=t, request=REQUEST, response=RESPONSE, ttl_seconds=60)
    await cache.lookup_response(tenant_id=t, request=REQUEST)
    await cache.lookup_response(tenant_id=t, request=REQUEST)
    stats = await cache.stats(tenant_id=t)
    assert (stats.llm.hits, stats.llm.misses) == (2, 1)
    assert (stats.kv.hits, stats.kv.misses) == (0, 0)


async def test_semantic_without_a_gateway_says_what_to_mount(cache: Any, tenants: list[dict[str, str]]) -> None:
    t = tenants[0]["tenant_id"]
    with pytest.raises(Unavailable, match="gateway"):
        await cache.lookup_response(tenant_id=t, request=REQUEST, semantic=True)


async def test_the_http_routes_reach_the_same_cache(
    cache: Any, clients: list[httpx.AsyncClient], tenants: list[dict[str, str]]
) -> None:
    api = clients[0]
    r = await api.post("/api/v1/cache/-/responses/lookup", json={"request": REQUEST})
    assert r.status_code == 200 and r.json() == {"hit": False, "response": None, "similarity": None}
    r = await api.post("/api/v1/cache/-/responses", json={"request": REQUEST, "response": RESPONSE, "ttl_seconds": 60})
    assert r.status_code == 204, r.text
    r = await api.post("/api/v1/cache/-/responses/lookup", json={"request": REQUEST})
    assert r.json() == {"hit": True, "response": RESPONSE, "similarity": None}
    found = await cache.lookup_response(tenant_id=tenants[0]["tenant_id"], request=REQUEST)
    assert found is not None and found.response == RESPONSE
    assert (await clients[1].post("/api/v1/cache/-/responses/lookup", json={"request": REQUEST})).json()["hit"] is False
