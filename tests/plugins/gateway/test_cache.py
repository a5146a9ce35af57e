"""Response caching through the cache plugin when a request asks for it: a hit skips the provider and is free."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg

from tests.conftest import Deployer
from tests.plugins.gateway.conftest import fake_upstream, write_config
from tests.plugins.gateway.test_limits import _tenant


async def test_exact_cache_hit_skips_the_provider_and_costs_nothing(
    deploy_app: Deployer, database_url: str, tmp_path: Path
) -> None:
    with fake_upstream("oa") as (oa, url):
        config = write_config(
            tmp_path,
            {
                "gpt": {
                    "deployments": [
                        {
                            "provider": "openai",
                            "model": "g",
                            "base_url": f"{url}/v1",
                            "input_cost_per_mtok": 1000,
                            "output_cost_per_mtok": 1000,
                        }
                    ]
                }
            },
        )
        async with deploy_app(plugins=("gateway", "cache"), env={"FAAS_GATEWAY_CONFIG": config}) as app:
            tid, c = await _tenant(app)
            body = {"model": "gpt", "messages": [{"role": "user", "content": "cache me"}], "cache": {"mode": "exact"}}
            first = await c.post("/v1/chat/completions", json=body)
            second = await c.post("/v1/chat/completions", json=body)
            assert first.status_code == second.status_code == 200
            assert "cached" not in first.json() and second.json()["cached"] is True
            assert second.headers["x-cache"] == "hit"
            assert second.json()["choices"] == first.json()["choices"]
            assert len(oa.received) == 1 and "cache" not in oa.received[0]
            other = await c.post("/v1/chat/completions", json={**body, "cache": None})
            assert other.status_code == 200 and len(oa.received) == 2  # not asked: not served from cache
            await c.aclose()
            await asyncio.sleep(0.3)
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT cache_hit, cost_usd FROM gateway_usage WHERE tenant_id = $1 ORDER BY id", tid)
    finally:
        await conn.close()
    assert [r["cache_hit"] for r in rows] == [False, True, False]
    assert rows[0]["cost_usd"] > 0 and rows[1]["cost_usd"] == 0


async def test_the_request_cache_mode_decides_the_semantic_index(
    deploy_app: Deployer, database_url: str, tmp_path: Path
) -> None:
    with fake_upstream("oa") as (oa, url):
        config = write_config(
            tmp_path, {"gpt": {"deployments": [{"provider": "openai", "model": "g", "base_url": f"{url}/v1"}]}}
        )
        async with deploy_app(plugins=("gateway", "cache"), env={"FAAS_GATEWAY_CONFIG": config}) as app:
            tid, c = await _tenant(app)
            alarm = {"model": "gpt", "messages": [{"role": "user", "content": "turn the alarm off"}]}
            # A semantic lookup for this request, then the provider fails: nothing is stored yet.
            oa.fail_status = 500
            failed = await c.post("/v1/chat/completions", json={**alarm, "cache": {"mode": "semantic"}})
            assert failed.status_code == 502
            oa.fail_status = None
            # The same request in exact mode is stored for exact lookups only, whatever lookup came before it.
            exact = await c.post("/v1/chat/completions", json={**alarm, "cache": {"mode": "exact"}})
            assert exact.status_code == 200 and "cached" not in exact.json()
            light = {"model": "gpt", "messages": [{"role": "user", "content": "switch on the light"}]}
            semantic = await c.post("/v1/chat/completions", json={**light, "cache": {"mode": "semantic"}})
            assert semantic.status_code == 200
            await c.aclose()
    conn = await asyncpg.connect(database_url)
    try:
        prompts = await conn.fetch("SELECT prompt FROM cache_semantic WHERE tenant_id = $1", tid)
    finally:
        await conn.close()
    assert [r["prompt"] for r in prompts] == ["switch on the light"]


async def test_a_cached_answer_is_per_end_user_unless_shared(deploy_app: Deployer, tmp_path: Path) -> None:
    with fake_upstream("oa") as (oa, url):
        config = write_config(
            tmp_path, {"gpt": {"deployments": [{"provider": "openai", "model": "g", "base_url": f"{url}/v1"}]}}
        )
        async with deploy_app(plugins=("gateway", "cache"), env={"FAAS_GATEWAY_CONFIG": config}) as app:
            _, c = await _tenant(app)
            msgs = [{"role": "user", "content": "what is on my calendar?"}]

            async def ask(user: str | None, **cache: object) -> bool:
                body = {"model": "gpt", "messages": msgs, "cache": {"mode": "exact", **cache}}
                r = await c.post("/v1/chat/completions", json=body | ({"user": user} if user else {}))
                assert r.status_code == 200, r.text
                return bool(r.json().get("cached"))

            # By default `user` scopes the answer: Ada's is never Bob's.
            assert [await ask("ada"), await ask("ada"), await ask("bob"), await ask(None)] == [
                False,
                True,
                False,
                False,
            ]
            assert len(oa.received) == 3
            # per_user false: one answer for every end user of the tenant (and for requests without `user`).
            shared = [await ask("ada", per_user=False), await ask("bob", per_user=False), await ask(None)]
            assert shared == [True, True, True] and len(oa.received) == 3
            await c.aclose()
