"""Platform routes (chat, generate, usage) and the interface other plugins call through the registry."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from app.settings import ConfigError
from plugins.gateway.catalog import load_file
from plugins.gateway.interface import GATEWAY
from plugins.gateway.schemas import ChatIn, GenerateIn
from tests.conftest import Deployer
from tests.harness import Deployment
from tests.plugins.gateway.test_limits import _tenant


async def test_generate_chat_and_usage_ledger(deploy_app: Deployer, database_url: str) -> None:
    async with deploy_app() as app:
        tid, c = await _tenant(app)
        g = await c.post("/api/v1/gateway/generate", json={"prompt": "tell me", "system": "be kind"})
        assert (
            g.status_code == 200 and g.json()["text"] == "You said: tell me" and g.json()["usage"]["total_tokens"] > 0
        )
        ch = await c.post(
            "/api/v1/gateway/chat", json={"messages": [{"role": "user", "content": "yo"}], "max_tokens": 1}
        )
        assert ch.json()["message"]["content"] == "You" and ch.json()["finish_reason"] == "length"
        await c.post("/v1/embeddings", json={"input": ["a", "b"]})
        bad = await c.post(
            "/v1/chat/completions", json={"model": "nope", "messages": [{"role": "user", "content": "x"}]}
        )
        assert bad.status_code == 404

        async def ledger() -> list[asyncpg.Record]:  # committed before each answer went out
            conn = await asyncpg.connect(database_url)
            try:
                rows: list[asyncpg.Record] = await conn.fetch(
                    "SELECT * FROM gateway_usage WHERE tenant_id = $1 ORDER BY id", tid
                )
            finally:
                await conn.close()
            assert [(r["model"], r["status"], r["deployment"]) for r in rows] == [
                ("mock-1", 200, "mock"),
                ("mock-1", 200, "mock"),
                ("all-MiniLM-L6-v2", 200, "local"),
            ]
            return rows

        rows = await ledger()
        assert rows[1]["completion_tokens"] == 1 and rows[0]["latency_ms"] > 0 and rows[0]["request_id"]
        u = (await c.get("/api/v1/gateway/usage", params={"limit": 1})).json()
        today = datetime.now(UTC).date().isoformat()
        assert u["data"][0]["model"] == "all-MiniLM-L6-v2" and u["data"][0]["day"] == today and u["next_cursor"]
        u2 = (await c.get("/api/v1/gateway/usage", params={"cursor": u["next_cursor"]})).json()
        assert [(r["model"], r["requests"]) for r in u2["data"]] == [("mock-1", 2)] and u2["next_cursor"] is None
        empty = await c.get("/api/v1/gateway/usage", params={"since": "2030-01-02", "until": "2030-01-01"})
        assert empty.status_code == 200 and empty.json()["data"] == []
        await c.aclose()


async def test_other_tenants_usage_is_invisible(deploy_app: Deployer, database_url: str) -> None:
    async with deploy_app() as app:
        _, c1 = await _tenant(app)
        _, c2 = await _tenant(app)
        await c1.post("/api/v1/gateway/generate", json={"prompt": "x"})

        async def recorded() -> None:
            assert len((await c1.get("/api/v1/gateway/usage")).json()["data"]) == 1

        await recorded()
        assert (await c2.get("/api/v1/gateway/usage")).json()["data"] == []
        await c1.aclose()
        await c2.aclose()


async def test_embed_texts_and_generate_through_the_registry(deployment: Deployment) -> None:
    """What the cache, rag and agents plugins call: `services.get(GATEWAY).embed_texts(...)` and friends."""
    tid = (await deployment.tenant()).tenant_id
    gateway = deployment.service(GATEWAY)
    vectors = await gateway.embed_texts(tenant_id=tid, texts=["hello world", "other", "hello world"])
    assert [len(v) for v in vectors] == [384, 384, 384] and vectors[0] == vectors[2] != vectors[1]
    assert await gateway.embed_texts(tenant_id=tid, texts=[]) == []
    out = await gateway.generate(tenant_id=tid, request=GenerateIn(prompt="ping"))
    assert out.text == "You said: ping"
    chat = await gateway.chat(
        tenant_id=tid, request=ChatIn.model_validate({"messages": [{"role": "user", "content": "yo"}]})
    )
    assert chat.message["content"] == "You said: yo"


def test_config_file_errors_name_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "g.yaml"
    bad.write_text("models:\n  m:\n    deployments:\n      - provider: nope\n")
    with pytest.raises(ConfigError, match=r"models\.m\.deployments\.0\.provider"):
        load_file(bad, {})
    missing = tmp_path / "k.yaml"
    missing.write_text("models:\n  m:\n    deployments:\n      - provider: openai\n        api_key_env: NOPE_KEY\n")
    with pytest.raises(ConfigError, match="NOPE_KEY"):
        load_file(missing, {})
    good = tmp_path / "ok.yaml"
    good.write_text(
        "models:\n  m:\n    deployments:\n      - provider: openai\n        api_key_env: K\n        weight: 3\n"
    )
    entry = load_file(good, {"K": "sk"})["m"]
    assert entry.deployments[0].weight == 3 and entry.deployments[0].api_key is not None
