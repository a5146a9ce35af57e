"""Per-tenant limits: allowed models, RPM, TPM (reserved then settled), monthly budget, across replicas."""

from __future__ import annotations

import asyncio
import json
import secrets
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import Deployer, eventually
from tests.harness import Deployment
from tests.plugins.gateway.conftest import fake_upstream, same_minute, write_config

MSG = [{"role": "user", "content": "hello"}]


async def _policy(d: Deployment, tenant_id: str, **policy: Any) -> dict[str, Any]:
    r = await d.admin().put(f"/api/v1/gateway/tenants/{tenant_id}/policy", json=policy)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def _tenant(d: Deployment) -> tuple[str, httpx.AsyncClient]:
    t, c = await d.api()
    return t.tenant_id, c


def _chat(**kw: Any) -> dict[str, Any]:
    return {"model": "mock-1", "messages": MSG, **kw}


async def test_rpm_limit_answers_429_with_retry_after(deploy_app: Deployer, database_url: str) -> None:
    async with deploy_app() as app:
        tid, c = await _tenant(app)
        await _policy(app, tid, rpm=3)
        codes = [(await c.post("/v1/chat/completions", json=_chat())).status_code for _ in range(3)]
        r = await c.post("/v1/chat/completions", json=_chat())
        assert codes == [200, 200, 200] and r.status_code == 429
        assert 1 <= int(r.headers["retry-after"]) <= 60
        assert (
            r.json()["error"]["code"] == "rate_limit_exceeded"
            and "3 requests per minute" in r.json()["error"]["message"]
        )
        p = await c.post("/api/v1/gateway/generate", json={"prompt": "x"})
        assert p.status_code == 429 and p.headers["content-type"] == "application/problem+json"
        await c.aclose()


async def test_tokens_are_reserved_then_settled_with_real_usage(
    deploy_app: Deployer, database_url: str, tmp_path: Path
) -> None:
    with fake_upstream("slow", delay=1.0) as (fake, url):
        config = write_config(
            tmp_path, {"slow": {"deployments": [{"provider": "openai", "model": "g", "base_url": f"{url}/v1"}]}}
        )
        async with deploy_app(env={"FAAS_GATEWAY_CONFIG": config}) as app:
            tid, c = await _tenant(app)
            await _policy(app, tid, tpm=2500)
            await same_minute(seconds_needed=20)
            body = {"model": "slow", "messages": MSG, "max_tokens": 1000}
            calls = [asyncio.create_task(c.post("/v1/chat/completions", json=body)) for _ in range(2)]

            async def in_flight() -> None:
                assert len(fake.received) == 2

            await eventually(in_flight)
            # Two reservations of ~1000 tokens are held while their calls run: a third does not fit.
            r = await c.post("/v1/chat/completions", json=body)
            assert r.status_code == 429 and "tokens per minute" in r.json()["error"]["message"]
            assert [(await call).status_code for call in calls] == [200, 200]
            # Each answer came after its reservation was settled with the real usage: the window has room again.
            assert (await c.post("/v1/chat/completions", json=body)).status_code == 200
            too_big = await c.post("/v1/chat/completions", json={**body, "max_tokens": 5000})
            assert too_big.status_code == 429 and "lower max_tokens" in too_big.json()["error"]["message"]
            await c.aclose()
        conn = await asyncpg.connect(database_url)
        try:
            held = await conn.fetchval("SELECT window_tokens FROM gateway_tenant_limits WHERE tenant_id = $1", tid)
        finally:
            await conn.close()
        assert held == 3 * 18  # the fake provider's real usage (11 + 7) for each of the three answered calls


async def test_budget_stops_spending_and_matches_the_ledger(
    deploy_app: Deployer, database_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "g.json"
    config.write_text(
        json.dumps(
            {
                "models": {
                    "priced": {
                        "deployments": [
                            {
                                "provider": "mock",
                                "model": "mock-1",
                                "input_cost_per_mtok": 1000,
                                "output_cost_per_mtok": 1000,
                            }
                        ]
                    }
                }
            }
        )
    )
    async with deploy_app(env={"FAAS_GATEWAY_CONFIG": str(config)}) as app:
        tid, c = await _tenant(app)
        await _policy(app, tid, monthly_budget_usd=0.05)
        statuses = []
        for _ in range(12):
            r = await c.post("/v1/chat/completions", json={"model": "priced", "messages": MSG, "max_tokens": 3})
            statuses.append(r.status_code)  # each answer's spend is settled before it goes out: no waiting
        assert 200 in statuses and statuses[-1] == 429
        assert r.json()["error"]["code"] == "insufficient_quota" and int(r.headers["retry-after"]) > 0
        policy = (await app.admin().get(f"/api/v1/gateway/tenants/{tid}/policy")).json()
        conn = await asyncpg.connect(database_url)
        try:
            spent = await conn.fetchval("SELECT sum(cost_usd) FROM gateway_usage WHERE tenant_id = $1", tid)
            n = await conn.fetchval("SELECT count(*) FROM gateway_usage WHERE tenant_id = $1 AND status = 200", tid)
        finally:
            await conn.close()
        assert n == statuses.count(200) and 0 < spent <= 0.05
        assert policy["spent_usd_this_month"] == pytest.approx(spent)
        await c.aclose()


async def test_allowed_models(deploy_app: Deployer, database_url: str) -> None:
    async with deploy_app() as app:
        tid, c = await _tenant(app)
        await _policy(app, tid, allowed_models=["all-MiniLM-L6-v2"])
        r = await c.post("/v1/chat/completions", json=_chat())
        assert r.status_code == 404 and "all-MiniLM-L6-v2" in r.json()["error"]["message"]
        models = (await c.get("/v1/models")).json()["data"]
        assert [m["id"] for m in models] == ["all-MiniLM-L6-v2"]
        assert (await c.post("/v1/embeddings", json={"model": "all-MiniLM-L6-v2", "input": "x"})).status_code == 200
        await c.aclose()
        admin = app.admin()
        assert (await admin.get("/api/v1/gateway/tenants/ten_nope/policy")).status_code == 404
        bad = await admin.put(f"/api/v1/gateway/tenants/{tid}/policy", json={"rpm": 0})
        assert bad.status_code == 422
        # PostgreSQL text holds no NUL: the documented pattern refuses the name, the stored policy stays.
        nul = await admin.put(f"/api/v1/gateway/tenants/{tid}/policy", json={"allowed_models": ["a\u0000b"]})
        assert nul.status_code == 422 and nul.json()["errors"][0]["loc"][:2] == ["body", "allowed_models"]
        kept = (await admin.get(f"/api/v1/gateway/tenants/{tid}/policy")).json()
        assert kept["allowed_models"] == ["all-MiniLM-L6-v2"]


@pytest.mark.parametrize("backend", ["postgres", "redis"])
async def test_two_replicas_share_one_limit(deploy_app: Deployer, database_url: str, backend: str) -> None:
    env: dict[str, str] = {}
    if backend == "redis":
        env = {"REDIS_URL": "redis://127.0.0.1:6379/0", "FAAS_GATEWAY_REDIS_PREFIX": f"test:{secrets.token_hex(6)}"}
    async with deploy_app(env=env) as one, deploy_app(env=env) as two:
        tid, c1 = await _tenant(one)
        await _policy(one, tid, rpm=10)
        c2 = two.client(c1.headers["authorization"].removeprefix("Bearer "))
        calls = [c.post("/v1/chat/completions", json=_chat()) for _ in range(15) for c in (c1, c2)]
        codes = [r.status_code for r in await asyncio.gather(*calls)]
        assert codes.count(200) == 10 and codes.count(429) == 20
        await c1.aclose()
        await c2.aclose()


async def test_with_redis_limits_reservations_are_settled_after_the_rows_commit(
    deploy_app: Deployer, database_url: str
) -> None:
    env = {"REDIS_URL": "redis://127.0.0.1:6379/0", "FAAS_GATEWAY_REDIS_PREFIX": f"test:{secrets.token_hex(6)}"}
    async with deploy_app(env=env) as app:
        tid, c = await _tenant(app)
        await _policy(app, tid, tpm=2500)
        await same_minute(seconds_needed=15)
        body = _chat(max_tokens=1000)
        assert [(await c.post("/v1/chat/completions", json=body)).status_code for _ in range(2)] == [200, 200]

        async def settled() -> None:  # Redis is settled just after the rows commit, off the answer's path
            assert (await c.post("/v1/chat/completions", json=body)).status_code == 200

        await eventually(settled)
        await c.aclose()


@pytest.mark.parametrize("backend", ["postgres", "redis"])
async def test_a_tenant_without_limits_is_admitted_without_counting_and_a_new_policy_reaches_every_replica(
    deploy_app: Deployer, database_url: str, tmp_path: Path, backend: str
) -> None:
    """No RPM/TPM/budget: no counter is touched before a call (no row appears), yet the month's spending is known
    when a budget is set later (taken from the ledger), and a policy set on one replica binds the other at once."""
    config = tmp_path / "g.json"
    priced = {"provider": "mock", "model": "mock-1", "input_cost_per_mtok": 1000, "output_cost_per_mtok": 1000}
    cheap = {"provider": "mock", "model": "mock-1"}
    config.write_text(json.dumps({"models": {"priced": {"deployments": [priced]}, "cheap": {"deployments": [cheap]}}}))
    env = {"FAAS_GATEWAY_CONFIG": str(config)}
    if backend == "redis":
        env |= {"REDIS_URL": "redis://127.0.0.1:6379/0", "FAAS_GATEWAY_REDIS_PREFIX": f"test:{secrets.token_hex(6)}"}
    body = {"model": "priced", "messages": MSG, "max_tokens": 3}
    async with deploy_app(env=env) as one, deploy_app(env=env) as two:
        tid, c1 = await _tenant(one)
        c2 = two.client(c1.headers["authorization"].removeprefix("Bearer "))
        for c in (c1, c2, c1, c2):  # both replicas hold the tenant's (empty) policy from here on
            assert (await c.post("/v1/chat/completions", json=body)).status_code == 200
        conn = await asyncpg.connect(database_url)
        try:
            assert await conn.fetchval("SELECT count(*) FROM gateway_tenant_limits WHERE tenant_id = $1", tid) == 0
            spent = await conn.fetchval("SELECT sum(cost_usd) FROM gateway_usage WHERE tenant_id = $1", tid)
        finally:
            await conn.close()
        assert spent > 0
        # A budget already spent: the policy knows the month's spending, and the other replica refuses at once
        # (its copy of the policy was dropped by the notification, not by a timer).
        policy = await _policy(one, tid, monthly_budget_usd=spent / 2)
        assert policy["spent_usd_this_month"] == pytest.approx(spent)

        async def refused_on_the_other_replica() -> None:
            r = await c2.post("/v1/chat/completions", json=body)
            assert r.status_code == 429 and r.json()["error"]["code"] == "insufficient_quota"

        await eventually(refused_on_the_other_replica, within=3.0)
        # Back to no limits, then an allow-list only: still no counting, and the list binds on both replicas.
        await _policy(one, tid, allowed_models=["cheap"])

        async def listed_on_the_other_replica() -> None:
            assert (await c2.post("/v1/chat/completions", json=body)).status_code == 404
            assert (await c2.post("/v1/chat/completions", json={**body, "model": "cheap"})).status_code == 200

        await eventually(listed_on_the_other_replica, within=3.0)
        await c1.aclose()
        await c2.aclose()


async def test_a_replica_that_lost_its_notifications_trusts_no_policy_it_kept(
    deploy_app: Deployer, database_url: str
) -> None:
    """The listening connection dies and a policy changes while nobody hears it (written straight to the table):
    the replica must not go on admitting by its old copy once it listens again."""
    async with deploy_app() as app:
        tid, c = await _tenant(app)
        assert (await c.post("/v1/chat/completions", json=_chat())).status_code == 200  # the empty policy is kept
        listening = (
            "SELECT pid FROM pg_stat_activity "
            "WHERE datname = current_database() AND query LIKE 'LISTEN %faas_gateway_policy%'"
        )
        conn = await asyncpg.connect(database_url)
        try:
            before = {r["pid"] for r in await conn.fetch(listening)}
            assert before
            await conn.execute("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid", list(before))
            await conn.execute(
                "INSERT INTO gateway_tenant_limits (tenant_id, allowed_models) VALUES ($1, ARRAY['none-of-these'])",
                tid,
            )

            async def listening_again() -> None:
                assert {r["pid"] for r in await conn.fetch(listening)} - before

            await eventually(listening_again, within=15.0)
        finally:
            await conn.close()
        await asyncio.sleep(0.3)  # the replica trusts its copies again from here on
        r = await c.post("/v1/chat/completions", json=_chat())
        assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
        await c.aclose()
