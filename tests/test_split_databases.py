"""Independent deployments, each on its own database: a front (tenants, keys, admin) calling plugins served by
another deployment whose database never saw the tenant created. The tenant comes from the signed call."""

from __future__ import annotations

from collections.abc import Iterator

import asyncpg
import pytest

from app.db import plain_url
from app.main import create_app
from tests.conftest import (
    ADMIN_KEY,
    INTERNAL_SECRET,
    asgi_client,
    fresh_database,
    make_settings,
    new_tenant,
    remote_env,
    serve_app,
)
from tests.lifespan import lifespan


@pytest.fixture
def serving_database(server_url: str, template_url: str) -> Iterator[str]:
    """A second fresh, migrated database: the serving deployment's own."""
    with fresh_database(server_url) as url:
        yield url


async def test_plugins_served_from_their_own_database_act_for_the_front_s_tenants(
    database_url: str, serving_database: str
) -> None:
    secret = {"FAAS_INTERNAL_SECRET": INTERNAL_SECRET}
    serving = create_app(make_settings(serving_database, FAAS_PLUGINS="prompts,gateway", **secret))
    async with serve_app(serving) as url:
        front_env = {"FAAS_PLUGINS": "prompts,gateway", **secret, **remote_env(("prompts", "gateway"), url)}
        async with lifespan(create_app(make_settings(database_url, **front_env))) as m:
            async with asgi_client(m.app, authorization=f"Bearer {ADMIN_KEY}") as admin:
                tenant = await new_tenant(admin)
                tid = tenant["tenant_id"]
                # The operator sets a policy before the tenant's first call: the gateway learns the tenant.
                r = await admin.put(f"/api/v1/gateway/tenants/{tid}/policy", json={"rpm": 100})
                assert r.status_code == 200, r.text
                assert (await admin.get(f"/api/v1/gateway/tenants/{tid}/policy")).json()["rpm"] == 100
                missing = await admin.get("/api/v1/gateway/tenants/ten_0000000000000000/policy")
                assert missing.status_code == 404, missing.text  # the front's tenants are the authority
            async with asgi_client(m.app, authorization=f"Bearer {tenant['api_key']}") as api:
                r = await api.post(
                    "/api/v1/prompts", json={"name": "greet", "type": "text", "template": "Hello {{name}}!"}
                )
                assert r.status_code == 201, r.text
                r = await api.post("/api/v1/prompts/greet/render", json={"variables": {"name": "Ada"}})
                assert r.status_code == 200, r.text
                assert "Hello Ada!" in r.text
                chat = {"model": "mock-1", "messages": [{"role": "user", "content": "hi"}]}
                r = await api.post("/v1/chat/completions", json=chat)
                assert r.status_code == 200, r.text

    front = await asyncpg.connect(plain_url(database_url))
    back = await asyncpg.connect(plain_url(serving_database))
    try:
        # Each database holds its own part: the prompt is the serving side's; the key stays on the front.
        assert await back.fetchval("SELECT count(*) FROM prompts_prompts WHERE tenant_id = $1", tid) == 1
        assert await front.fetchval("SELECT count(*) FROM prompts_prompts") == 0
        learned = await back.fetchrow("SELECT name, settings FROM tenants WHERE id = $1", tid)
        assert learned is not None and "learned_from" in learned["settings"]
        assert await back.fetchval("SELECT count(*) FROM api_keys") == 0
    finally:
        await front.close()
        await back.close()
