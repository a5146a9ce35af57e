"""Ingestion fixtures: the ingestion plugin with the rag and gateway plugins it needs, a job worker on, direct and
remote (in remote mode ingestion and rag run on the serving deployment: uploads cross the wire as multipart)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from app.main import create_app
from tests.conftest import INTERNAL_SECRET, eventually, make_settings, remote_env
from tests.harness import Deployment
from tests.lifespan import lifespan

URL = "/api/v1/ingestion/jobs"
RAG = "/api/v1/rag/collections"


@pytest.fixture
def deploy_plugins() -> tuple[str, ...]:
    return ("gateway", "rag", "ingestion")


@pytest.fixture
def deploy_remote() -> tuple[str, ...]:
    return ("ingestion", "rag")


@pytest.fixture
def deploy_env() -> dict[str, str]:
    return {"FAAS_JOBS_WORKER": "on"}


async def new_collection(api: httpx.AsyncClient, name: str = "docs", **extra: Any) -> dict[str, Any]:
    r = await api.post(RAG, json={"name": name, **extra})
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()
    return data


async def upload(
    api: httpx.AsyncClient, collection: str, *files: tuple[str, bytes], status: int = 202
) -> list[dict[str, Any]]:
    r = await api.post(URL, data={"collection": collection}, files=[("file", (n, b)) for n, b in files])
    assert r.status_code == status, r.text
    jobs: list[dict[str, Any]] = r.json().get("jobs", [])
    return jobs


async def finished(api: httpx.AsyncClient, job_id: str, within: float = 60) -> dict[str, Any]:
    """The job once it has succeeded or failed."""

    async def done() -> dict[str, Any]:
        job: dict[str, Any] = (await api.get(f"/api/v1/jobs/{job_id}")).json()
        assert job["status"] in ("succeeded", "failed", "cancelled"), job
        return job

    return await eventually(done, within=within, interval=0.1)


async def ingested(api: httpx.AsyncClient, collection: str, name: str, data: bytes) -> dict[str, Any]:
    [job] = await upload(api, collection, (name, data))
    done = await finished(api, job["id"])
    assert done["status"] == "succeeded", done
    return done


async def chunks(api: httpx.AsyncClient, collection_id: str, document_id: str) -> list[dict[str, Any]]:
    r = await api.get(f"{RAG}/{collection_id}/documents/{document_id}")
    assert r.status_code == 200, r.text
    found: list[dict[str, Any]] = r.json()["chunks"]
    return found


@asynccontextmanager
async def with_remote_rag(database_url: str, rag_url: str, **env: str) -> AsyncIterator[httpx.AsyncClient]:
    """A tenant's client of a deployment running ingestion direct (with a job worker) and rag remote at `rag_url`
    (a deployment started with `INTERNAL_SECRET`, or a proxy in front of one)."""
    settings = {
        "FAAS_PLUGINS": "gateway,rag,ingestion",
        "FAAS_JOBS_WORKER": "on",
        "FAAS_INTERNAL_SECRET": INTERNAL_SECRET,
        **env,
        **remote_env(["rag"], rag_url),
    }
    front = create_app(make_settings(database_url, **settings))
    async with lifespan(front) as manager:
        state = front.state.lifespan
        d = Deployment("direct", manager.app, state, state)
        try:
            assert d.services.modes["rag"] == "remote" and d.services.modes["ingestion"] == "direct"
            _, api = await d.api()
            yield api
        finally:
            for c in d._clients:
                await c.aclose()
