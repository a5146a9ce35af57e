"""A tenant's gateway policy, in both gateway modes: PUT replaces the whole policy, PATCH changes only the fields it
names (null makes one unlimited), so `{"rpm": 100}` sent with PATCH never resets the allowed models."""

from __future__ import annotations

from typing import Any

from tests.conftest import Deployer

UNSET = {"allowed_models": None, "rpm": None, "tpm": None, "monthly_budget_usd": None}


def _policy(body: dict[str, Any]) -> dict[str, Any]:
    return {k: body[k] for k in UNSET}


async def test_patch_changes_only_what_it_names(deploy_app: Deployer) -> None:
    async with deploy_app() as d:
        tenant, client = await d.api()
        admin = d.admin()
        url = f"/api/v1/gateway/tenants/{tenant.tenant_id}/policy"
        # A tenant without a policy row: PATCH creates it, the rest unlimited.
        r = await admin.patch(url, json={"allowed_models": ["mock-1"]})
        assert r.status_code == 200 and _policy(r.json()) == {**UNSET, "allowed_models": ["mock-1"]}, r.text
        r = await admin.patch(url, json={"rpm": 100, "monthly_budget_usd": 5.0})
        expected = {**UNSET, "allowed_models": ["mock-1"], "rpm": 100, "monthly_budget_usd": 5.0}
        assert r.status_code == 200 and _policy(r.json()) == expected, r.text
        assert _policy((await admin.get(url)).json()) == expected
        assert [m["id"] for m in (await client.get("/v1/models")).json()["data"]] == ["mock-1"]  # it applies
        r = await admin.patch(url, json={"rpm": None})  # null: unlimited, the others kept
        expected["rpm"] = None
        assert _policy(r.json()) == expected
        assert _policy((await admin.patch(url, json={})).json()) == expected  # nothing named, nothing changed
        bad = await admin.patch(url, json={"tpm": 0})
        assert bad.status_code == 422 and bad.json()["errors"][0]["loc"] == ["body", "tpm"]
        assert _policy((await admin.get(url)).json()) == expected  # a refused change loses nothing
        # PUT is the whole policy: what it leaves out becomes unlimited (documented).
        r = await admin.put(url, json={"rpm": 100})
        assert _policy(r.json()) == {**UNSET, "rpm": 100}


async def test_patch_is_an_admin_operation_on_a_tenant_that_exists(deploy_app: Deployer) -> None:
    async with deploy_app() as d:
        tenant, client = await d.api()
        url = f"/api/v1/gateway/tenants/{tenant.tenant_id}/policy"
        assert (await client.patch(url, json={"rpm": 1})).status_code == 401  # a tenant key is not the admin key
        missing = await d.admin().patch("/api/v1/gateway/tenants/ten_nope/policy", json={"rpm": 1})
        assert missing.status_code == 404 and missing.json()["type"] == "urn:faas:problem:not-found"
        assert (await d.admin().get(url)).json()["rpm"] is None
