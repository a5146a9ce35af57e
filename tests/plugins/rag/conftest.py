"""RAG fixtures: the rag plugin with the gateway it requires (local embeddings, the `mock-1` chat model), direct
and remote (the root conftest's `mode`; in remote mode the rag plugin runs on the serving deployment)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

URL = "/api/v1/rag/collections"


@pytest.fixture
def deploy_plugins() -> tuple[str, ...]:
    return ("gateway", "rag")


@pytest.fixture
def deploy_remote() -> tuple[str, ...]:
    return ("rag",)


async def new_collection(api: httpx.AsyncClient, name: str = "docs", **extra: Any) -> dict[str, Any]:
    r = await api.post(URL, json={"name": name, **extra})
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()
    return data


async def add(api: httpx.AsyncClient, collection_id: str, docs: list[dict[str, Any]]) -> dict[str, Any]:
    r = await api.post(f"{URL}/{collection_id}/documents", json=docs)
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()
    return data


async def search(api: httpx.AsyncClient, collection_id: str, query: str, **extra: Any) -> list[dict[str, Any]]:
    r = await api.post(f"{URL}/{collection_id}/search", json={"query": query, **extra})
    assert r.status_code == 200, r.text
    hits: list[dict[str, Any]] = r.json()["hits"]
    return hits
