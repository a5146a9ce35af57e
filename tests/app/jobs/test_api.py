"""The job queue as a tenant meets it: jobs a plugin started, read, listed and cancelled at /api/v1/jobs."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from app.db import Database
from app.errors import NotFound
from app.jobs import JobQueue
from tests.app.jobs.conftest import open_gate, queue_status, reaches, start
from tests.app.jobs.jobtest_plugin import SPINS_STOPPED, plugin
from tests.conftest import asgi_client, eventually, new_tenant
from tests.harness import Tenant


async def test_a_job_runs_to_its_result(api: httpx.AsyncClient) -> None:
    job = await start(api, "jobtest.add", a=2, b=3)
    assert job["status"] == "queued" and job["id"].startswith("job_") and job["kind"] == "jobtest.add"
    done = await reaches(api, job["id"], "succeeded")
    assert done["result"] == {"sum": 5, "attempt": 1}
    assert done["progress"] == 100 and done["stage"] == "checked" and done["attempts"] == 1
    assert done["error"] is None and done["started_at"] and done["finished_at"] >= done["started_at"]


async def test_progress_is_visible_while_it_runs(api: httpx.AsyncClient, database_url: str) -> None:
    job = await start(api, "jobtest.wait", gate="g1")
    running = await reaches(api, job["id"], "running", stage="waiting", progress=10)
    assert running["result"] is None and running["finished_at"] is None
    await open_gate(database_url, "g1")
    done = await reaches(api, job["id"], "succeeded")
    assert done["result"] == {"gate": "g1", "attempt": 1} and done["stage"] == "waiting"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"service_error": True, "message": "the parser is down"}, "the parser is down"),
        ({"message": "page 3 is not a page"}, "ValueError: page 3 is not a page"),
    ],
)
async def test_a_failing_job_says_why_without_a_trace(
    api: httpx.AsyncClient, payload: dict[str, Any], reason: str
) -> None:
    job = await start(api, "jobtest.fail", **payload)
    failed = await reaches(api, job["id"], "failed")
    assert failed["error"] == reason  # first line only: no second line, no traceback
    assert failed["result"] is None and failed["stage"] == "about to fail" and failed["progress"] == 30


@pytest.mark.parametrize(
    ("bad", "reason"),
    [("set", "TypeError: Type is not JSON serializable: set"), ("nul", "UntranslatableCharacterError: ")],
)
async def test_a_result_that_cannot_be_stored_fails_the_job(api: httpx.AsyncClient, bad: str, reason: str) -> None:
    job = await start(api, "jobtest.bad_result", bad=bad)
    failed = await reaches(api, job["id"], "failed")
    assert failed["error"].startswith(reason) and failed["result"] is None


async def test_cancel_a_queued_job(idle_api: httpx.AsyncClient, database_url: str) -> None:
    job = await start(idle_api, "jobtest.add", a=1, b=1)
    r = await idle_api.post(f"/api/v1/jobs/{job['id']}/cancel")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled" and r.json()["error"] == "cancelled on request"
    assert await queue_status(database_url, job["id"]) == "cancelled"  # no worker will ever fetch it
    again = await idle_api.post(f"/api/v1/jobs/{job['id']}/cancel")
    assert again.status_code == 409
    assert "already cancelled" in again.json()["detail"] and again.json()["job_status"] == "cancelled"
    assert again.json()["status"] == 409  # the problem's status is the HTTP one


async def test_cancel_a_running_job(api: httpx.AsyncClient, database_url: str) -> None:
    job = await start(api, "jobtest.wait", gate="never")
    await reaches(api, job["id"], "running", stage="waiting")
    r = await api.post(f"/api/v1/jobs/{job['id']}/cancel")
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "running" and r.json()["cancel_requested"] is True
    cancelled = await reaches(api, job["id"], "cancelled")
    assert cancelled["error"] == "cancelled on request" and cancelled["finished_at"]
    assert await queue_status(database_url, job["id"]) == "aborted"
    assert (await api.post(f"/api/v1/jobs/{job['id']}/cancel")).status_code == 409


@pytest.mark.parametrize("interval", [0.01, 0.5])
async def test_blocking_work_in_a_thread_stops_when_it_sees_the_cancellation(
    api: httpx.AsyncClient, interval: float
) -> None:
    # Polled every 0.5 s, the thread looks only after the job was settled as cancelled: it must still see it.
    job = await start(api, "jobtest.spin", interval=interval)
    await reaches(api, job["id"], "running", stage="spinning")
    assert (await api.post(f"/api/v1/jobs/{job['id']}/cancel")).status_code == 202
    await reaches(api, job["id"], "cancelled")

    async def stopped() -> None:
        assert SPINS_STOPPED.get(job["id"]) is True

    await eventually(stopped)


async def test_a_finished_job_cannot_be_cancelled(api: httpx.AsyncClient) -> None:
    job = await start(api, "jobtest.add", a=1, b=2)
    await reaches(api, job["id"], "succeeded")
    r = await api.post(f"/api/v1/jobs/{job['id']}/cancel")
    assert r.status_code == 409 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["detail"].startswith(f"job {job['id']} has already succeeded")
    assert (await api.get(f"/api/v1/jobs/{job['id']}")).json()["status"] == "succeeded"


async def test_another_tenants_job_is_not_found(app: Any, admin: httpx.AsyncClient, api: httpx.AsyncClient) -> None:
    job = await start(api, "jobtest.add", a=1, b=1)
    other = await new_tenant(admin)
    async with asgi_client(app, authorization=f"Bearer {other['api_key']}") as intruder:
        missing = await intruder.get("/api/v1/jobs/job_00000000000000000000")
        seen = await intruder.get(f"/api/v1/jobs/{job['id']}")
        assert seen.status_code == missing.status_code == 404
        assert seen.json()["type"] == missing.json()["type"] == "urn:faas:problem:not-found"
        assert (await intruder.post(f"/api/v1/jobs/{job['id']}/cancel")).status_code == 404
        assert (await intruder.get("/api/v1/jobs")).json() == {"data": [], "next_cursor": None}
    mine = (await api.get("/api/v1/jobs")).json()
    assert [j["id"] for j in mine["data"]] == [job["id"]]
    assert (await api.get("/api/v1/jobs/not-a-job-id")).status_code == 422  # not an id this API issues


async def test_list_filters_and_pages_newest_first(api: httpx.AsyncClient) -> None:
    added = [await start(api, "jobtest.add", a=i, b=i) for i in range(3)]
    failing = await start(api, "jobtest.fail", message="no")
    await reaches(api, failing["id"], "failed")
    for job in added:
        await reaches(api, job["id"], "succeeded")
    ids = [j["id"] for j in [*added, failing]][::-1]  # newest first
    r = await api.get("/api/v1/jobs", params={"limit": 3})
    first = r.json()
    assert [j["id"] for j in first["data"]] == ids[:3] and first["next_cursor"] == ids[2]
    second = (await api.get("/api/v1/jobs", params={"limit": 3, "cursor": first["next_cursor"]})).json()
    assert [j["id"] for j in second["data"]] == ids[3:] and second["next_cursor"] is None
    by_kind = (await api.get("/api/v1/jobs", params={"kind": "jobtest.add"})).json()["data"]
    assert {j["id"] for j in by_kind} == {j["id"] for j in added}
    by_status = (await api.get("/api/v1/jobs", params={"status": "failed"})).json()["data"]
    assert [j["id"] for j in by_status] == [failing["id"]]
    assert (await api.get("/api/v1/jobs", params={"status": "lost"})).status_code == 422
    # A kind no plugin could declare (a NUL, capitals, no plugin prefix) is the query's 422, not a database error.
    for kind in ("jobtest.a\x00b", "JobTest.add", "add"):
        r = await api.get("/api/v1/jobs", params={"kind": kind})
        assert r.status_code == 422 and r.json()["detail"] == "the query string failed validation", (kind, r.text)


async def test_enqueue_refuses_an_unknown_kind_and_tenant(database_url: str, tenant: Tenant) -> None:
    db = Database(database_url)
    await db.connect()
    try:
        queue = JobQueue(db, kinds=plugin.jobs)
        with pytest.raises(ValueError, match=r"no plugin here declares the job kind 'jobtest\.nope'"):
            await queue.enqueue(tenant_id=tenant.tenant_id, kind="jobtest.nope")
        with pytest.raises(ValueError, match="not JSON"):
            await queue.enqueue(tenant_id=tenant.tenant_id, kind="jobtest.add", payload={"a": object()})
        with pytest.raises(NotFound):
            await queue.enqueue(tenant_id="ten_missing", kind="jobtest.add")
        with pytest.raises(NotFound):
            await queue.get_job(tenant_id=tenant.tenant_id, job_id="job_00000000000000000000")
    finally:
        await db.disconnect()
