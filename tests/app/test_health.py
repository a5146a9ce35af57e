"""Liveness and readiness: what the public readiness report may say, and what it costs."""

from __future__ import annotations

import httpx

PUBLIC_KEYS = {"ok", "breaker", "status", "error", "latency_ms"}


async def test_ready_says_nothing_an_outsider_should_not_know(
    api: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    # Use the gateway once, so that its per-deployment breakers exist (their ids are the operator's).
    r = await api.post(
        "/api/v1/gateway/chat", json={"model": "mock-1", "messages": [{"role": "user", "content": "hi"}]}
    )
    assert r.status_code == 200, r.text
    r = await client.get("/health/ready")
    assert r.status_code == 200, r.text
    for name, check in r.json()["checks"]["plugins"].items():
        assert set(check) <= PUBLIC_KEYS, (name, check)
    assert "mock" not in r.text
