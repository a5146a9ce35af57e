"""The semantic response cache with real embeddings from the gateway's local all-MiniLM-L6-v2 model.

At the default threshold (0.95) a cached "turn the alarm off" answers a true paraphrase but not "turn the alarm
on" (similarity 0.927), and a semantic hit never crosses tenants, models or system prompts.
"""

from __future__ import annotations

from typing import Any

import pytest

RESPONSE = {"id": "chatcmpl-alarm", "choices": [{"message": {"role": "assistant", "content": "Alarm is off."}}]}


@pytest.fixture
def deploy_plugins() -> tuple[str, ...]:
    return ("gateway", "cache")


def chat(text: str, *, model: str = "gpt-4o-mini", system: str | None = "You control the house.") -> dict[str, Any]:
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
    return {"model": model, "messages": messages, "temperature": 0}


async def remember(cache: Any, tenant_id: str, request: dict[str, Any]) -> None:
    """What the gateway does: a semantic lookup misses, the upstream answers, the answer is stored."""
    assert await cache.lookup_response(tenant_id=tenant_id, request=request, semantic=True) is None
    await cache.store_response(tenant_id=tenant_id, request=request, response=RESPONSE, ttl_seconds=60)


async def test_paraphrase_hits_and_the_opposite_misses(cache: Any, tenants: list[dict[str, str]]) -> None:
    t = tenants[0]["tenant_id"]
    await remember(cache, t, chat("turn the alarm off"))
    on = await cache.lookup_response(tenant_id=t, request=chat("turn the alarm on"), semantic=True)
    assert on is None
    hit = await cache.lookup_response(tenant_id=t, request=chat("turn off the alarm"), semantic=True)
    assert hit is not None and hit.response == RESPONSE
    assert hit.similarity is not None and 0.95 <= hit.similarity < 1.0
    # Without `semantic`, only the exact request matches.
    assert await cache.lookup_response(tenant_id=t, request=chat("turn off the alarm")) is None
    exact = await cache.lookup_response(tenant_id=t, request=chat("turn the alarm off"), semantic=True)
    assert exact is not None and exact.similarity is None
    stats = await cache.stats(tenant_id=t)
    assert (stats.semantic.hits, stats.semantic.misses) == (1, 2)


async def test_a_lower_threshold_is_the_callers_choice(cache: Any, tenants: list[dict[str, str]]) -> None:
    t = tenants[0]["tenant_id"]
    await remember(cache, t, chat("turn the alarm off"))
    loose = await cache.lookup_response(tenant_id=t, request=chat("turn the alarm on"), semantic=True, threshold=0.9)
    assert loose is not None and loose.similarity is not None and 0.9 <= loose.similarity < 0.95


async def test_never_across_tenants_models_or_system_prompts(cache: Any, tenants: list[dict[str, str]]) -> None:
    mine, theirs = (t["tenant_id"] for t in tenants)
    await remember(cache, mine, chat("turn the alarm off"))
    paraphrase = "turn off the alarm"
    for tenant_id, request in [
        (theirs, chat(paraphrase)),
        (mine, chat(paraphrase, model="gpt-4o")),
        (mine, chat(paraphrase, system="You are a pirate.")),
        (mine, chat(paraphrase, system=None)),
        (mine, {**chat(paraphrase), "temperature": 1}),
    ]:
        assert await cache.lookup_response(tenant_id=tenant_id, request=request, semantic=True) is None, request
    assert await cache.lookup_response(tenant_id=mine, request=chat(paraphrase), semantic=True) is not None


async def test_multi_turn_requests_are_never_answered_by_meaning(cache: Any, tenants: list[dict[str, str]]) -> None:
    t = tenants[0]["tenant_id"]
    await remember(cache, t, chat("turn the alarm off"))
    multi = chat("turn off the alarm")
    multi["messages"] = [
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "hi"},
        *multi["messages"][1:],
    ]
    assert await cache.lookup_response(tenant_id=t, request=multi, semantic=True) is None


async def test_store_without_a_prior_lookup_indexes_only_when_asked(cache: Any, tenants: list[dict[str, str]]) -> None:
    t = tenants[0]["tenant_id"]
    await cache.store_response(tenant_id=t, request=chat("turn the alarm off"), response=RESPONSE, ttl_seconds=60)
    assert await cache.lookup_response(tenant_id=t, request=chat("turn off the alarm"), semantic=True) is None
    await cache.store_response(
        tenant_id=t, request=chat("what is the capital of France?"), response=RESPONSE, ttl_seconds=60, semantic=True
    )
    hit = await cache.lookup_response(tenant_id=t, request=chat("what's the capital of France?"), semantic=True)
    assert hit is not None and hit.similarity is not None
