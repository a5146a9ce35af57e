"""The key/value API over HTTP, run against both backends and in both modes: values, TTL expiry, namespace clear,
isolation, errors."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import httpx
import pytest

from app.errors import InvalidInput

URL = "/api/v1/cache"


async def test_set_then_get_returns_the_json_value(clients: list[httpx.AsyncClient], cache_backend: str) -> None:
    api = clients[0]
    for key, value in [("d", {"a": [1, 2.5, None], "b": "é"}), ("l", [1, "x"]), ("n", None), ("s", "text"), ("i", 7)]:
        r = await api.put(f"{URL}/ns1/{key}", json={"value": value, "ttl_seconds": 60})
        assert r.status_code == 200, r.text
        assert r.json()["value"] == value
        got = await api.get(f"{URL}/ns1/{key}")
        assert got.status_code == 200, got.text
        assert got.json()["value"] == value
        remaining = datetime.fromisoformat(got.json()["expires_at"]).timestamp() - datetime.now().timestamp()
        assert 50 < remaining <= 61


async def test_set_replaces_the_previous_value(clients: list[httpx.AsyncClient]) -> None:
    api = clients[0]
    await api.put(f"{URL}/ns/k", json={"value": 1})
    await api.put(f"{URL}/ns/k", json={"value": 2})
    assert (await api.get(f"{URL}/ns/k")).json()["value"] == 2


async def test_missing_key_is_404_and_delete_removes(clients: list[httpx.AsyncClient]) -> None:
    api = clients[0]
    r = await api.get(f"{URL}/ns/nothing")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "nothing" in r.json()["detail"]
    await api.put(f"{URL}/ns/k", json={"value": "v"})
    assert (await api.delete(f"{URL}/ns/k")).status_code == 204
    assert (await api.get(f"{URL}/ns/k")).status_code == 404
    assert (await api.delete(f"{URL}/ns/k")).status_code == 404


async def test_expired_entry_is_never_served(clients: list[httpx.AsyncClient]) -> None:
    api = clients[0]
    await api.put(f"{URL}/ns/short", json={"value": "soon gone", "ttl_seconds": 1})
    await api.put(f"{URL}/ns/long", json={"value": "stays", "ttl_seconds": 60})
    assert (await api.get(f"{URL}/ns/short")).status_code == 200
    await asyncio.sleep(1.1)
    assert (await api.get(f"{URL}/ns/short")).status_code == 404
    assert (await api.delete(f"{URL}/ns/short")).status_code == 404
    assert (await api.get(f"{URL}/ns/long")).json()["value"] == "stays"


async def test_clearing_a_namespace_drops_its_entries_only(clients: list[httpx.AsyncClient]) -> None:
    api = clients[0]
    for key in ("a", "b", "c"):
        await api.put(f"{URL}/one/{key}", json={"value": key})
    await api.put(f"{URL}/two/a", json={"value": "other namespace"})
    assert (await api.delete(f"{URL}/one")).status_code == 204
    for key in ("a", "b", "c"):
        assert (await api.get(f"{URL}/one/{key}")).status_code == 404
    assert (await api.get(f"{URL}/two/a")).json()["value"] == "other namespace"
    # The namespace is usable again at once, and a second clear works the same way.
    await api.put(f"{URL}/one/a", json={"value": "new"})
    assert (await api.get(f"{URL}/one/a")).json()["value"] == "new"
    await api.delete(f"{URL}/one")
    assert (await api.get(f"{URL}/one/a")).status_code == 404


async def test_another_tenants_entry_is_404(clients: list[httpx.AsyncClient]) -> None:
    mine, theirs = clients
    await mine.put(f"{URL}/shared/k", json={"value": "mine"})
    assert (await theirs.get(f"{URL}/shared/k")).status_code == 404
    assert (await theirs.delete(f"{URL}/shared/k")).status_code == 404
    await theirs.put(f"{URL}/shared/k", json={"value": "theirs"})
    await theirs.delete(f"{URL}/shared")
    assert (await mine.get(f"{URL}/shared/k")).json()["value"] == "mine"


async def test_bad_input_is_refused_with_the_field_named(clients: list[httpx.AsyncClient]) -> None:
    api = clients[0]
    cases: list[tuple[str, dict[str, Any], str]] = [
        (f"{URL}/{'n' * 65}/k", {"value": 1}, "namespace"),
        (f"{URL}/ns/{'k' * 257}", {"value": 1}, "key"),
        (f"{URL}/ns/sp%20ace", {"value": 1}, "key"),
        (f"{URL}/ns/...", {"value": 1}, "key"),
        (f"{URL}/ns/k", {"value": 1, "ttl_seconds": 0}, "ttl_seconds"),
        (f"{URL}/ns/k", {"value": 1, "ttl_seconds": 30 * 24 * 3600 + 1}, "ttl_seconds"),
        (f"{URL}/ns/k", {"ttl_seconds": 5}, "value"),
        (f"{URL}/ns/k", {"value": 1, "extra": True}, "extra"),
    ]
    for url, body, field in cases:
        r = await api.put(url, json=body)
        # A namespace or key outside the documented pattern is invalid, like a bad body; both name the field.
        assert r.status_code == 422, (url, body, r.text)
        assert any(field in e["loc"] for e in r.json()["errors"]), (field, r.json())
    # A segment starting with `-` is the plugin's own space (/-/stats), never a namespace: no such route.
    assert (await api.put(f"{URL}/-bad/k", json={"value": 1})).status_code == 404
    put_info = await api.put(f"{URL}/-/stats", json={"value": 1})
    assert put_info.status_code == 405 and "PUT" not in put_info.headers["allow"]
    big = await api.put(f"{URL}/ns/big", json={"value": "x" * (1024 * 1024 + 1)})
    assert big.status_code == 413 and "FAAS_CACHE_MAX_VALUE_BYTES" in big.json()["detail"]
    assert (await api.get(f"{URL}/ns/big")).status_code == 404


async def test_stats_count_hits_and_misses_per_tenant(clients: list[httpx.AsyncClient], cache_backend: str) -> None:
    mine, theirs = clients
    await mine.put(f"{URL}/ns/k", json={"value": 1})
    for _ in range(3):
        await mine.get(f"{URL}/ns/k")
    await mine.get(f"{URL}/ns/missing")
    await theirs.get(f"{URL}/ns/k")
    stats = (await mine.get(f"{URL}/-/stats")).json()
    assert stats["backend"] == cache_backend
    assert stats["kv"] == {"hits": 3, "misses": 1}
    assert stats["llm"] == {"hits": 0, "misses": 0}
    assert (await theirs.get(f"{URL}/-/stats")).json()["kv"] == {"hits": 0, "misses": 1}


async def test_lookups_are_exported_as_prometheus_metrics(
    clients: list[httpx.AsyncClient], serving: httpx.AsyncClient, cache_backend: str
) -> None:
    # The counters belong to the deployment where the cache runs direct (in remote mode, the serving one).
    api = clients[0]
    await api.put(f"{URL}/ns/k", json={"value": 1})
    await api.get(f"{URL}/ns/k")
    await api.get(f"{URL}/ns/k")
    await api.get(f"{URL}/ns/nope")
    text = (await serving.get("/metrics")).text
    labels = f'backend="{cache_backend}",kind="kv",plugin="cache"'
    assert f'faas_cache_lookups_total{{{labels},result="hit"}} 2.0' in text
    assert f'faas_cache_lookups_total{{{labels},result="miss"}} 1.0' in text


async def test_routes_are_in_the_openapi_document(clients: list[httpx.AsyncClient]) -> None:
    doc = (await clients[0].get("/openapi.json")).json()
    entry = doc["paths"]["/api/v1/cache/{namespace}/{key}"]
    assert set(entry) >= {"get", "put", "delete"}
    assert "delete" in doc["paths"]["/api/v1/cache/{namespace}"]
    assert "get" in doc["paths"]["/api/v1/cache/-/stats"]


async def test_integers_past_64_bits_round_trip_exactly(clients: list[httpx.AsyncClient]) -> None:
    api = clients[0]
    for key, value in [("big", 123456789012345678901234567890), ("nested", {"k": [-18446744073709551617, 1.5]})]:
        r = await api.put(f"{URL}/ns/{key}", json={"value": value})
        assert r.status_code == 200, r.text
        assert r.json()["value"] == value
        got = await api.get(f"{URL}/ns/{key}")
        assert got.status_code == 200, got.text
        assert got.json()["value"] == value


@pytest.mark.parametrize(("namespace", "key"), [("ns", "."), ("ns", ".."), ("ns", "..."), (".", "k"), ("..", "k")])
async def test_names_made_only_of_dots_are_refused_and_clear_nothing(
    cache: Any, tenants: list[dict[str, str]], namespace: str, key: str
) -> None:
    # An HTTP client resolves `ns/.` to `ns` (and `ns/..` to the parent): in remote mode, deleting the entry "."
    # would clear the namespace. Every operation refuses such a name, direct or remote, before any request.
    t = tenants[0]["tenant_id"]
    await cache.set_entry(tenant_id=t, namespace="ns", key="keep", value=1, ttl_seconds=60)
    for call in (cache.delete_entry, cache.get_entry):
        with pytest.raises(InvalidInput) as refused:
            await call(tenant_id=t, namespace=namespace, key=key)
        assert any(("key" if namespace == "ns" else "namespace") in e["loc"] for e in refused.value.extra["errors"])
    with pytest.raises(InvalidInput):
        await cache.set_entry(tenant_id=t, namespace=namespace, key=key, value=2, ttl_seconds=60)
    if namespace != "ns":
        with pytest.raises(InvalidInput):
            await cache.clear_namespace(tenant_id=t, namespace=namespace)
    assert (await cache.get_entry(tenant_id=t, namespace="ns", key="keep")).value == 1
    await cache.set_entry(tenant_id=t, namespace="ns", key=".k.", value=3, ttl_seconds=60)  # dots among others
    assert (await cache.get_entry(tenant_id=t, namespace="ns", key=".k.")).value == 3
