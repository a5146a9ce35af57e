"""Tenants and keys through the admin API, and the key checks every tenant route applies."""

from __future__ import annotations

import hashlib

import asyncpg
import httpx

from app.db import Database
from app.tenancy import TenantStore
from tests.conftest import asgi_client, new_tenant
from tests.harness import Tenant


async def test_create_tenant_returns_a_working_key(admin: httpx.AsyncClient, app: object) -> None:
    created = await new_tenant(admin, "acme")
    assert created["tenant_id"].startswith("ten_") and created["api_key"].startswith("faas_")
    async with asgi_client(app, authorization=f"Bearer {created['api_key']}") as c:
        r = await c.get("/api/v1/rag/-/info")
    assert r.status_code == 200
    assert r.json()["plugin"] == "rag"


async def test_key_is_stored_hashed_never_in_clear(admin: httpx.AsyncClient, database_url: str) -> None:
    created = await new_tenant(admin)
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT * FROM api_keys")
    finally:
        await conn.close()
    assert len(rows) == 1
    assert rows[0]["key_hash"] == hashlib.sha256(created["api_key"].encode()).digest()
    assert not any(created["api_key"] in str(v) for v in dict(rows[0]).values())
    keys = (await admin.get(f"/api/v1/admin/tenants/{created['tenant_id']}/keys")).json()["data"]
    assert len(keys) == 1 and "api_key" not in keys[0]
    assert created["api_key"].startswith(keys[0]["prefix"]) and len(keys[0]["prefix"]) < 16


async def test_duplicate_tenant_name_conflicts(admin: httpx.AsyncClient) -> None:
    await new_tenant(admin, "same")
    r = await admin.post("/api/v1/admin/tenants", json={"name": "same"})
    assert r.status_code == 409
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"] == "urn:faas:problem:conflict"


async def test_list_tenants_paginates(admin: httpx.AsyncClient) -> None:
    made = {(await new_tenant(admin))["tenant_id"] for _ in range(5)}
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = (await admin.get("/api/v1/admin/tenants", params=params)).json()
        assert len(page["data"]) <= 2
        seen += [t["tenant_id"] for t in page["data"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert set(seen) == made and len(seen) == len(made)


async def test_bad_cursor_and_limit_are_422(admin: httpx.AsyncClient) -> None:
    assert (await admin.get("/api/v1/admin/tenants", params={"cursor": "!!!"})).status_code == 422
    r = await admin.get("/api/v1/admin/tenants", params={"limit": "0"})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["query", "limit"]


async def test_revoked_key_is_403_and_other_keys_still_work(admin: httpx.AsyncClient, app: object) -> None:
    t = await new_tenant(admin)
    second = (await admin.post(f"/api/v1/admin/tenants/{t['tenant_id']}/keys", json={"name": "ci"})).json()
    r = await admin.delete(f"/api/v1/admin/tenants/{t['tenant_id']}/keys/{t['key_id']}")
    assert r.status_code == 200 and r.json()["revoked_at"] is not None
    async with asgi_client(app, authorization=f"Bearer {t['api_key']}") as c:
        r = await c.get("/api/v1/rag/-/info")
        assert r.status_code == 403
        assert "revoked" in r.json()["detail"]
    async with asgi_client(app, authorization=f"Bearer {second['api_key']}") as c:
        assert (await c.get("/api/v1/rag/-/info")).status_code == 200


async def test_revoking_another_tenants_key_is_404(admin: httpx.AsyncClient) -> None:
    a, b = await new_tenant(admin), await new_tenant(admin)
    r = await admin.delete(f"/api/v1/admin/tenants/{a['tenant_id']}/keys/{b['key_id']}")
    assert r.status_code == 404


async def test_tenant_routes_need_a_valid_key(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/prompts/-/info")
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    r = await client.get("/api/v1/prompts/-/info", headers={"authorization": "Bearer faas_nope"})
    assert r.status_code == 401
    r = await client.get("/api/v1/prompts/-/info", headers={"authorization": "Basic abc"})
    assert r.status_code == 401


async def test_tenant_header_from_a_client_is_ignored(api: httpx.AsyncClient, tenant: Tenant) -> None:
    r = await api.get("/api/v1/rag/-/info", headers={"x-tenant-id": "ten_someoneelse"})
    assert r.status_code == 200
    # The tenant comes from the key: a forged header neither authenticates nor switches tenant.
    r = await api.get("/api/v1/rag/-/info", headers={"authorization": "", "x-tenant-id": tenant.tenant_id})
    assert r.status_code == 401


async def test_admin_api_needs_the_admin_key(client: httpx.AsyncClient, tenant: Tenant) -> None:
    assert (await client.get("/api/v1/admin/tenants")).status_code == 401
    r = await client.get("/api/v1/admin/tenants", headers={"authorization": f"Bearer {tenant.api_key}"})
    assert r.status_code == 401


async def test_admin_api_is_closed_without_admin_key(database_url: str) -> None:
    from app.main import create_app
    from app.settings import Settings
    from tests.lifespan import lifespan

    app = create_app(Settings.from_env({"DATABASE_URL": database_url, "FAAS_JOBS_WORKER": "off"}))
    async with lifespan(app) as m, asgi_client(m.app, authorization="Bearer anything-at-all-here") as c:
        r = await c.post("/api/v1/admin/tenants", json={"name": "x"})
    assert r.status_code == 403 and "FAAS_ADMIN_KEY" in r.json()["detail"]


async def test_revocation_reaches_a_replica_within_the_key_cache_ttl(
    admin: httpx.AsyncClient, database_url: str
) -> None:
    from app.main import create_app
    from tests.conftest import make_settings
    from tests.lifespan import lifespan

    t = await new_tenant(admin)
    other = create_app(make_settings(database_url, FAAS_AUTH_CACHE_SECONDS="0.3"))
    async with lifespan(other) as m, asgi_client(m.app, authorization=f"Bearer {t['api_key']}") as replica:
        assert (await replica.get("/api/v1/rag/-/info")).status_code == 200  # now cached on the replica
        await admin.delete(f"/api/v1/admin/tenants/{t['tenant_id']}/keys/{t['key_id']}")
        import asyncio

        await asyncio.sleep(0.35)
        assert (await replica.get("/api/v1/rag/-/info")).status_code == 403


async def test_a_key_name_with_a_nul_is_refused_by_the_schema(admin: httpx.AsyncClient, tenant: Tenant) -> None:
    r = await admin.post(f"/api/v1/admin/tenants/{tenant.tenant_id}/keys", json={"name": "a\x00b"})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "name"], r.text
    doc = (await admin.get("/openapi.json")).json()
    assert "pattern" in doc["components"]["schemas"]["KeyCreate"]["properties"]["name"]


async def test_a_full_key_cache_evicts_one_key_not_all(database_url: str) -> None:
    """With more active keys than the per-replica cache holds, the least recently used one leaves; the others stay
    cached (a cache cleared whole would send every request to the database at once)."""
    db = Database(database_url)
    await db.connect()
    try:
        store = TenantStore(db, key_cache_seconds=60, key_cache_size=2)
        keys = [(await store.insert_tenant(name=f"lru-{i}"))[2] for i in range(3)]
        for key in keys:
            assert await store.lookup_key(key) is not None
        # Behind the cache's back: every key row is gone. Cached keys still answer; the evicted one does not.
        await db.execute("DELETE FROM api_keys")
        assert [await store.lookup_key(k) is not None for k in keys] == [False, True, True]
    finally:
        await db.disconnect()
