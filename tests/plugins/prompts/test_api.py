"""Prompts over HTTP: create, versions (immutable), labels, list, delete, tenant isolation."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
import pytest

from app.errors import InvalidInput
from plugins.prompts.interface import PROMPTS
from plugins.prompts.schemas import PromptCreate
from tests.harness import Deployment, Tenant

URL = "/api/v1/prompts"


async def create(api: httpx.AsyncClient, name: str = "greet", **extra: object) -> dict[str, Any]:
    body = {"name": name, "template": "Hello {{name}}!", "commit_message": "first", **extra}
    r = await api.post(URL, json=body)
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()
    return data


async def test_create_derives_variables_and_points_latest_at_version_1(api: httpx.AsyncClient) -> None:
    created = await create(
        api, template="{{greeting}}, {{ name }}! {{name}}", config={"model": "m", "temperature": 0.2}
    )
    assert created["type"] == "text" and created["syntax"] == "simple"
    assert created["latest_version"] == 1 and created["labels"] == {"latest": 1}
    [v1] = created["versions"]
    assert v1["variables"] == ["greeting", "name"]
    assert v1["config"] == {
        "model": "m",
        "temperature": 0.2,
        "top_p": None,
        "max_tokens": None,
        "stop": None,
        "params": {},
    }
    assert v1["commit_message"] == "first"
    r = await api.post(URL, json={"name": "greet", "template": "again"})
    assert r.status_code == 409


async def test_versions_are_appended_and_never_changed(api: httpx.AsyncClient, database_url: str) -> None:
    await create(api)
    r = await api.post(f"{URL}/greet/versions", json={"template": "Hi {{name}} from {{place}}", "commit_message": "v2"})
    assert r.status_code == 201, r.text
    assert r.json()["version"] == 2 and r.json()["variables"] == ["name", "place"]
    got = (await api.get(f"{URL}/greet")).json()
    assert [v["version"] for v in got["versions"]] == [2, 1]
    assert got["versions"][1]["template"] == "Hello {{name}}!"
    assert got["labels"] == {"latest": 2}
    # No route changes a version, and the database refuses it even to SQL that bypasses the store.
    assert (await api.put(f"{URL}/greet/versions/1", json={"template": "x"})).status_code in (404, 405)
    conn = await asyncpg.connect(database_url)
    try:
        with pytest.raises(asyncpg.PostgresError, match="immutable"):
            await conn.execute("UPDATE prompts_versions SET template = '\"changed\"' WHERE version = 1")
    finally:
        await conn.close()
    assert (await api.get(f"{URL}/greet")).json()["versions"][1]["template"] == "Hello {{name}}!"


async def test_labels_move_and_latest_follows_the_newest(api: httpx.AsyncClient) -> None:
    await create(api)
    await api.post(f"{URL}/greet/versions", json={"template": "v2 {{name}}", "labels": ["staging"]})
    r = await api.put(f"{URL}/greet/labels/production", json={"version": 1})
    assert r.status_code == 200 and r.json() == {"name": "greet", "label": "production", "version": 1}
    render = {"variables": {"name": "Ada"}}
    assert (await api.post(f"{URL}/greet/render", json={**render, "label": "production"})).json()[
        "text"
    ] == "Hello Ada!"
    assert (await api.post(f"{URL}/greet/render", json={**render, "label": "staging"})).json()["text"] == "v2 Ada"
    await api.put(f"{URL}/greet/labels/production", json={"version": 2})
    assert (await api.post(f"{URL}/greet/render", json={**render, "label": "production"})).json()["version"] == 2
    await api.post(f"{URL}/greet/versions", json={"template": "v3 {{name}}"})
    latest = await api.post(f"{URL}/greet/render", json=render)
    assert latest.json()["version"] == 3 and latest.json()["text"] == "v3 Ada"
    assert (await api.get(f"{URL}/greet")).json()["labels"] == {"latest": 3, "production": 2, "staging": 2}
    assert (await api.put(f"{URL}/greet/labels/latest", json={"version": 1})).status_code == 422
    assert (await api.put(f"{URL}/greet/labels/production", json={"version": 9})).status_code == 404
    bad = await api.put(f"{URL}/greet/labels/Bad Label", json={"version": 1})
    assert bad.status_code == 422 and bad.json()["errors"][0]["loc"] == ["path", "label"]
    assert (await api.post(f"{URL}/greet/render", json={**render, "label": "nope"})).status_code == 404


async def test_list_paginates_by_name(api: httpx.AsyncClient) -> None:
    for name in ("c", "a", "b"):
        await create(api, name)
    first = (await api.get(URL, params={"limit": 2})).json()
    assert [p["name"] for p in first["data"]] == ["a", "b"] and first["next_cursor"]
    second = (await api.get(URL, params={"limit": 2, "cursor": first["next_cursor"]})).json()
    assert [p["name"] for p in second["data"]] == ["c"] and second["next_cursor"] is None
    assert first["data"][0]["labels"] == {"latest": 1}


async def test_delete_removes_the_prompt_and_frees_its_name(api: httpx.AsyncClient) -> None:
    await create(api)
    assert (await api.delete(f"{URL}/greet")).status_code == 204
    assert (await api.get(f"{URL}/greet")).status_code == 404
    assert (await api.delete(f"{URL}/greet")).status_code == 404
    again = await create(api, template="new {{x}}")
    render = await api.post(f"{URL}/greet/render", json={"variables": {"x": 1}})
    assert again["latest_version"] == 1 and render.json()["text"] == "new 1"


async def test_another_tenants_prompt_is_404(clients: list[httpx.AsyncClient]) -> None:
    mine, theirs = clients
    await create(mine)
    assert (await theirs.get(f"{URL}/greet")).status_code == 404
    assert (await theirs.post(f"{URL}/greet/render", json={"variables": {"name": "x"}})).status_code == 404
    assert (await theirs.post(f"{URL}/greet/versions", json={"template": "x"})).status_code == 404
    assert (await theirs.put(f"{URL}/greet/labels/prod", json={"version": 1})).status_code == 404
    assert (await theirs.delete(f"{URL}/greet")).status_code == 404
    assert (await theirs.get(URL)).json()["data"] == []
    await create(theirs)  # the same name is free in another tenant
    assert (await mine.get(f"{URL}/greet")).status_code == 200


async def test_bad_input_names_the_field(api: httpx.AsyncClient) -> None:
    for body, field in [
        ({"name": "-bad", "template": "x"}, "name"),
        ({"name": "ok", "template": "x", "type": "image"}, "type"),
        ({"name": "ok", "template": "x", "syntax": "mako"}, "syntax"),
        ({"name": "ok", "template": "x", "config": {"temperature": 5}}, "temperature"),
        ({"name": "ok", "template": [{"role": "robot", "content": "x"}], "type": "chat"}, "role"),
    ]:
        r = await api.post(URL, json=body)
        assert r.status_code == 422, (body, r.text)
        assert any(field in e["loc"] or f"{field} must" in e["msg"] for e in r.json()["errors"]), (field, r.json())
    # A template of the wrong shape for the type is refused by the schema itself (text takes a string).
    mismatch = await api.post(URL, json={"name": "ok", "template": [{"role": "user", "content": "x"}]})
    assert mismatch.status_code == 422 and mismatch.json()["errors"][0]["loc"] == ["body", "text", "template"]
    assert (await api.get(f"{URL}/ok")).status_code == 404  # nothing half-created


async def test_an_empty_template_is_refused(api: httpx.AsyncClient) -> None:
    r = await api.post(URL, json={"name": "blank", "template": ""})
    assert r.status_code == 422 and r.json()["errors"][0]["type"] == "string_too_short", r.text
    assert (await api.get(f"{URL}/blank")).status_code == 404
    assert (await api.post(URL, json={"name": "blank", "template": "x"})).status_code == 201
    r = await api.post(f"{URL}/blank/versions", json={"template": ""})
    assert r.status_code == 422, r.text
    assert (await api.get(f"{URL}/blank")).json()["latest_version"] == 1


async def test_versions_come_a_page_at_a_time(api: httpx.AsyncClient) -> None:
    assert (await api.post(URL, json={"name": "many", "template": "v1"})).status_code == 201
    for n in range(2, 26):
        r = await api.post(f"{URL}/many/versions", json={"template": f"v{n}"})
        assert r.status_code == 201, r.text
    first = (await api.get(f"{URL}/many")).json()
    assert [v["version"] for v in first["versions"]] == list(range(25, 5, -1))  # 20 by default, newest first
    assert first["latest_version"] == 25 and first["versions_next_cursor"] == "6"
    rest = (await api.get(f"{URL}/many", params={"cursor": first["versions_next_cursor"]})).json()
    assert [v["version"] for v in rest["versions"]] == [5, 4, 3, 2, 1] and rest["versions_next_cursor"] is None
    seen, cursor = [], None
    while True:
        page = (await api.get(f"{URL}/many", params={"limit": 7, **({"cursor": cursor} if cursor else {})})).json()
        seen += [v["template"] for v in page["versions"]]
        cursor = page["versions_next_cursor"]
        if cursor is None:
            break
    assert seen == [f"v{n}" for n in range(25, 0, -1)]
    for bad in ({"cursor": "abc"}, {"cursor": "0"}, {"cursor": "9" * 10}, {"limit": 0}, {"limit": 101}):
        r = await api.get(f"{URL}/many", params=bad)
        assert r.status_code == 422 and r.json()["errors"][0]["loc"][0] == "query", (bad, r.text)
    past = (await api.get(f"{URL}/many", params={"cursor": "1"})).json()
    assert past["versions"] == [] and past["versions_next_cursor"] is None


async def test_a_caller_in_process_gets_the_same_paging_rules(deployment: Deployment, tenant: Tenant) -> None:
    prompts = deployment.service(PROMPTS)
    await prompts.create_prompt(
        tenant_id=tenant.tenant_id, prompt=PromptCreate.model_validate({"name": "p", "template": "a"})
    )
    one = await prompts.get_prompt(tenant_id=tenant.tenant_id, name="p", limit=1)
    assert [v.version for v in one.versions] == [1] and one.versions_next_cursor is None
    for limit, cursor in ((0, None), (101, None), (20, "abc"), (20, "0")):
        with pytest.raises(InvalidInput):
            await prompts.get_prompt(tenant_id=tenant.tenant_id, name="p", limit=limit, cursor=cursor)
