"""A plugin for the job-queue tests only, written exactly as a built-in would declare and start its jobs.

Its route `POST /api/v1/jobtest/jobs` enqueues through `PluginContext.jobs`. Its kinds: `jobtest.add` (a step and
progress, then a result), `jobtest.fail` (raises), `jobtest.bad_result` (returns what cannot be stored),
`jobtest.spin` (blocking work in a thread that polls `ctx.cancelled`), and `jobtest.wait` (optionally records a side
effect in a transactional step, reports progress, then waits until the test opens a gate: a row in `jobtest_gates`).
Gates and side effects live in the database, so a test can drive workers in other processes.
`tests.app.jobs.test_worker` publishes this module under the `faas.plugins` entry-point group for the `faas worker`
processes it starts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from pydantic import Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from app.auth import tenant_id
from app.errors import Unavailable
from app.jobs import JobContext, JobPublic, JobQueue
from app.plugin_kit import LocalDescription, PluginInfo, Readiness
from app.plugins import Plugin, PluginContext, ServiceKey, service
from app.routing import api_route, json_response, read_body
from app.schemas import Schema


class StartIn(Schema):
    kind: str
    payload: dict[str, Any] = Field(default_factory=dict)


class JobtestService:
    def __init__(self, jobs: JobQueue, about: LocalDescription) -> None:
        self.jobs = jobs
        self._about = about

    async def describe(self) -> PluginInfo:
        return self._about.info()

    async def ready(self) -> Readiness:
        return {"ok": True}

    async def start(self, *, tenant_id: str, kind: str, payload: dict[str, Any]) -> JobPublic:
        return await self.jobs.enqueue(tenant_id=tenant_id, kind=kind, payload=payload)


async def start_job(request: Request) -> Response:
    body = await read_body(request, StartIn)
    started = await service(request, JOBTEST).start(tenant_id=tenant_id(request), kind=body.kind, payload=body.payload)
    return json_response(started, 202)


def routes() -> list[BaseRoute]:
    return [api_route("POST", "/jobs", start_job, "Start a test job", body=StartIn, response=JobPublic, status=202)]


JOBTEST: ServiceKey[JobtestService] = ServiceKey("jobtest")


@asynccontextmanager
async def direct(ctx: PluginContext) -> AsyncIterator[JobtestService]:
    async with ctx.db.transaction():
        await ctx.db.execute("SELECT pg_advisory_xact_lock(4242)")  # processes starting together create them once
        await ctx.db.execute("CREATE TABLE IF NOT EXISTS jobtest_gates (name text PRIMARY KEY)")
        await ctx.db.execute(
            "CREATE TABLE IF NOT EXISTS jobtest_effects (job_id text NOT NULL, attempt integer NOT NULL, "
            "at timestamptz NOT NULL DEFAULT now())"
        )
    yield JobtestService(ctx.jobs, LocalDescription(ctx, ("jobs",)))


async def add(ctx: JobContext) -> dict[str, Any]:
    a, b = ctx.job.payload["a"], ctx.job.payload["b"]

    async def compute() -> int:
        return int(a + b)

    await ctx.progress("adding", 40)
    total = await ctx.step("sum", compute)
    await ctx.progress("checked", 80)
    return {"sum": total, "attempt": ctx.job.attempt}


async def fail(ctx: JobContext) -> None:
    await ctx.progress("about to fail", 30)
    if ctx.job.payload.get("service_error"):
        raise Unavailable(ctx.job.payload["message"])
    raise ValueError(ctx.job.payload["message"] + "\nsecond line, for the log only")


async def bad_result(ctx: JobContext) -> Any:
    """A result that is not JSON (a set), or that PostgreSQL's jsonb refuses (a NUL character)."""
    return {1, 2} if ctx.job.payload["bad"] == "set" else {"text": "a\x00b"}


# job id -> its blocking loop saw `ctx.cancelled` and stopped (read by in-process tests only).
SPINS_STOPPED: dict[str, bool] = {}


async def spin(ctx: JobContext) -> None:
    """Blocking work in a thread, which asyncio cannot interrupt: it polls `ctx.cancelled` every `interval`
    seconds (a slow poll sees it only after the job has been settled as cancelled). It gives up after a minute,
    so that a broken cancellation fails its test instead of hanging the test run."""
    interval = float(ctx.job.payload.get("interval", 0.01))

    def blocking() -> None:
        deadline = time.monotonic() + 60
        while not ctx.cancelled and time.monotonic() < deadline:
            time.sleep(interval)
        SPINS_STOPPED[ctx.job.id] = ctx.cancelled

    await ctx.progress("spinning", 5)
    await asyncio.to_thread(blocking)


async def wait(ctx: JobContext) -> dict[str, Any]:
    if ctx.job.payload.get("effect"):

        async def effect() -> str:
            await ctx.db.execute(
                "INSERT INTO jobtest_effects (job_id, attempt) VALUES (:j, :a)",
                {"j": ctx.job.id, "a": ctx.job.attempt},
            )
            return "written"

        await ctx.step("effect", effect, transactional=True)
    await ctx.progress("waiting", 10)
    gate = ctx.job.payload["gate"]
    # The gate is a row another process may write: poll it.
    while not await ctx.db.fetch_val("SELECT count(*) FROM jobtest_gates WHERE name = :g", {"g": gate}):  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    return {"gate": gate, "attempt": ctx.job.attempt}


plugin = Plugin(
    key=JOBTEST,
    direct=direct,
    routes=routes,
    jobs={
        "jobtest.add": add,
        "jobtest.fail": fail,
        "jobtest.wait": wait,
        "jobtest.bad_result": bad_result,
        "jobtest.spin": spin,
    },
    description="Job kinds for the job-queue tests",
)
