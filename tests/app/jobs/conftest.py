"""Fixtures for the job-queue tests: the app with the `jobtest` plugin (its worker on, with short timings), a second
app on the same database with no worker, and helpers that drive jobs through the HTTP API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import pytest

from app.db import plain_url
from app.plugins import Plugin
from tests.app.jobs.jobtest_plugin import plugin
from tests.conftest import Deployer, eventually
from tests.harness import deploy

# Stopping an app lets running jobs finish for 1 s only. The stall window keeps its 30 s default here: a busy machine
# must not make a live in-process worker look dead (the killed-worker test shortens it for its own processes).
FAST = {"FAAS_JOBS_SHUTDOWN_SECONDS": "1", "FAAS_JOBS_WORKER": "on"}


@pytest.fixture
def deploy_plugins() -> tuple[str, ...]:
    return ("jobtest",)


@pytest.fixture
def deploy_extra() -> tuple[Plugin[Any], ...]:
    return (plugin,)


@pytest.fixture
def deploy_env() -> dict[str, str]:
    return dict(FAST)


@asynccontextmanager
async def jobs_app(database_url: str, **env: str) -> AsyncIterator[Any]:
    """Another deployment with the jobtest plugin on the same database (a second replica)."""
    async with deploy(database_url, mode="direct", plugins=("jobtest",), extra=(plugin,), env={**FAST, **env}) as d:
        yield d.app


@pytest.fixture
async def idle_api(deploy_app: Deployer) -> AsyncIterator[httpx.AsyncClient]:
    """A fresh tenant's client of a deployment without a worker: its jobs stay queued."""
    async with deploy_app(env={"FAAS_JOBS_WORKER": "off"}) as idle:
        yield (await idle.api())[1]


async def start(api: httpx.AsyncClient, kind: str, **payload: Any) -> dict[str, Any]:
    r = await api.post("/api/v1/jobtest/jobs", json={"kind": kind, "payload": payload})
    assert r.status_code == 202, r.text
    job: dict[str, Any] = r.json()
    return job


async def reaches(api: httpx.AsyncClient, job_id: str, status: str, *, within: float = 15.0, **fields: Any) -> Any:
    """Poll the job until it has `status` (and `fields`); return it."""

    async def check() -> Any:
        r = await api.get(f"/api/v1/jobs/{job_id}")
        assert r.status_code == 200, r.text
        job = r.json()
        assert job["status"] == status, job
        for key, value in fields.items():
            assert job[key] == value, job
        return job

    return await eventually(check, within=within)


async def sql(database_url: str, query: str, *args: Any) -> Any:
    conn = await asyncpg.connect(plain_url(database_url))
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


async def open_gate(database_url: str, name: str) -> None:
    await sql(database_url, "INSERT INTO jobtest_gates (name) VALUES ($1)", name)


async def queue_status(database_url: str, job_id: str) -> str:
    rows = await sql(
        database_url,
        "SELECT p.status::text AS status FROM jobs j JOIN procrastinate_jobs p ON p.id = j.procrastinate_id "
        "WHERE j.id = $1",
        job_id,
    )
    return str(rows[0]["status"])
