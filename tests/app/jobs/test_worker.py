"""Workers that die, stop, or lose their job: nothing is lost, nothing is done twice.

The killed-worker test runs `faas worker` processes, as an operator would. They find the `jobtest` plugin the way
any third-party plugin is found: a distribution on the path that publishes it under the `faas.plugins` group.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.db import Database
from app.jobs.handler import Job, JobContext, JobLost
from app.jobs.store import JobStore
from app.plugins import Services
from tests.app.jobs.conftest import FAST, jobs_app, open_gate, queue_status, reaches, sql, start
from tests.conftest import ADMIN_KEY, asgi_client, new_tenant

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def worker_env(tmp_path: Path, database_url: str) -> dict[str, str]:
    """Environment for `faas worker` processes that serve the jobtest plugin against the test database."""
    dist = tmp_path / "plugins" / "faas_jobtest-0.0.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: faas-jobtest\nVersion: 0.0.0\n")
    (dist / "entry_points.txt").write_text("[faas.plugins]\njobtest = tests.app.jobs.jobtest_plugin:plugin\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAAS_") and k != "DATABASE_URL"}
    env.update(FAST, FAAS_PLUGINS="jobtest")
    path = os.pathsep.join([str(dist.parent), str(ROOT)])
    env.update(FAAS_JOBS_STALLED_SECONDS="2", DATABASE_URL=database_url, PYTHONPATH=path)
    return env


@pytest.fixture
def workers(tmp_path: Path, worker_env: dict[str, str]) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Started `faas worker` processes; any still running at the end is killed."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def spawn(workers: list[subprocess.Popen[bytes]], env: dict[str, str], cwd: Path) -> subprocess.Popen[bytes]:
    with (cwd / f"worker-{len(workers)}.log").open("wb") as log:  # the child keeps its own descriptor
        proc = subprocess.Popen([sys.executable, "-m", "app.cli", "worker"], env=env, cwd=cwd, stdout=log, stderr=log)
    workers.append(proc)
    return proc


async def effects(database_url: str, job_id: str) -> list[int]:
    rows = await sql(database_url, "SELECT attempt FROM jobtest_effects WHERE job_id = $1", job_id)
    return [r["attempt"] for r in rows]


@pytest.mark.slow
async def test_a_job_survives_a_killed_worker_and_completes_once(
    idle_api: httpx.AsyncClient,
    database_url: str,
    worker_env: dict[str, str],
    workers: list[subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    job = await start(idle_api, "jobtest.wait", gate="after-the-kill", effect=True)
    first = spawn(workers, worker_env, tmp_path)
    await reaches(idle_api, job["id"], "running", stage="waiting", within=60)
    assert await effects(database_url, job["id"]) == [1]  # the side effect of attempt 1 is in
    first.send_signal(signal.SIGKILL)
    assert first.wait(timeout=10) == -signal.SIGKILL
    await open_gate(database_url, "after-the-kill")

    second = spawn(workers, worker_env, tmp_path)
    done = await reaches(idle_api, job["id"], "succeeded", within=60)
    assert done["attempts"] == 2 and done["result"] == {"gate": "after-the-kill", "attempt": 2}
    assert await effects(database_url, job["id"]) == [1], "the retry repeated a step that had finished"
    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=30) == 0, (tmp_path / "worker-1.log").read_text()[-2000:]


async def test_a_stopping_worker_hands_its_job_back(database_url: str) -> None:
    async with jobs_app(database_url, FAAS_JOBS_SHUTDOWN_SECONDS="0.2") as first:
        async with asgi_client(first, authorization=f"Bearer {ADMIN_KEY}") as admin:
            key = (await new_tenant(admin))["api_key"]
        async with asgi_client(first, authorization=f"Bearer {key}") as api:
            job = await start(api, "jobtest.wait", gate="after-the-restart")
            await reaches(api, job["id"], "running")
    # The worker stopped with the job still waiting: it went back to the queue, and that run is not counted.
    rows = await sql(database_url, "SELECT status, attempts, lease FROM jobs WHERE id = $1", job["id"])
    assert dict(rows[0]) == {"status": "queued", "attempts": 0, "lease": None}
    assert await queue_status(database_url, job["id"]) == "todo"
    await open_gate(database_url, "after-the-restart")
    async with jobs_app(database_url) as second, asgi_client(second, authorization=f"Bearer {key}") as api:
        done = await reaches(api, job["id"], "succeeded")
        assert done["attempts"] == 1 and done["result"]["attempt"] == 1


async def test_a_job_whose_worker_keeps_dying_gives_up(idle_api: httpx.AsyncClient, database_url: str) -> None:
    job = await start(idle_api, "jobtest.add", a=1, b=1)
    # As if five workers had died running it (each start counts; only a clean hand-back does not).
    await sql(database_url, "UPDATE jobs SET attempts = 5 WHERE id = $1", job["id"])
    async with jobs_app(database_url, FAAS_JOBS_MAX_ATTEMPTS="5"):
        failed = await reaches(idle_api, job["id"], "failed")
    assert failed["error"] == "the job was started 5 times and its worker stopped each time; giving up"
    assert failed["result"] is None


async def test_a_run_that_lost_its_job_changes_nothing(idle_api: httpx.AsyncClient, database_url: str) -> None:
    """A worker declared dead (a long pause, a partition) may still be running: its writes must not count."""
    started = await start(idle_api, "jobtest.wait", gate="unused")
    await sql(database_url, "CREATE TABLE IF NOT EXISTS lost_writes (n integer)")
    db = Database(database_url)
    await db.connect()
    try:
        store = JobStore(db)
        stale = await store.claim_job(job_id=started["id"], lease="stale")
        fresh = await store.claim_job(job_id=started["id"], lease="fresh")  # the reaper requeued it; another took it
        assert stale is not None and fresh is not None and fresh.attempts == 2
        job = Job(id=fresh.id, tenant_id=fresh.tenant_id, kind=fresh.kind, payload=fresh.payload, attempt=1)

        def run_as(lease: str) -> JobContext:
            return JobContext(
                job=job, services=Services(), db=db, _store=store, _lease=lease, _should_stop=lambda: False
            )

        calls: list[str] = []

        async def write() -> str:
            calls.append("write")
            await db.execute("INSERT INTO lost_writes VALUES (1)")
            return "written"

        with pytest.raises(JobLost):
            await run_as("stale").step("write", write, transactional=True)
        assert await db.fetch_val("SELECT count(*) FROM lost_writes") == 0  # rolled back with the step
        with pytest.raises(JobLost):
            await run_as("stale").progress("late", 50)
        assert not await store.finish_job(job_id=job.id, lease="stale", status="succeeded", result='"stale"')

        # A plain step's effects cannot be rolled back: the stale run records it, and the fresh run reuses it.
        async def effect() -> list[int]:
            calls.append("effect")
            return [1, 2]

        with pytest.raises(JobLost):
            await run_as("stale").step("effect", effect)
        assert await run_as("fresh").step("effect", effect) == [1, 2]
        assert await run_as("fresh").step("write", write, transactional=True) == "written"
        assert calls == ["write", "effect", "write"]
        assert await db.fetch_val("SELECT count(*) FROM lost_writes") == 1
        assert await store.finish_job(job_id=job.id, lease="fresh", status="succeeded", result='"fresh"')
    finally:
        await db.disconnect()


def test_faas_worker_refuses_to_start_with_nothing_to_run(database_url: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAAS_") and k != "DATABASE_URL"}
    r = subprocess.run(
        [sys.executable, "-m", "app.cli", "worker"],
        env={**env, "DATABASE_URL": database_url, "FAAS_PLUGINS": "prompts"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "declares job kinds" in r.stderr


async def test_a_stopped_worker_leaves_no_task_running(database_url: str) -> None:
    """Stopping an app stops every task its worker started (the listener included): a task left running would make
    the process hang on exit, cancelling it for ever."""
    before = asyncio.all_tasks()
    async with jobs_app(database_url, FAAS_JOBS_SHUTDOWN_SECONDS="0.2") as app:
        async with asgi_client(app, authorization=f"Bearer {ADMIN_KEY}") as admin:
            key = (await new_tenant(admin))["api_key"]
        async with asgi_client(app, authorization=f"Bearer {key}") as api:
            done = await start(api, "jobtest.add", a=1, b=2)
            await reaches(api, done["id"], "succeeded")
            waiting = await start(api, "jobtest.wait", gate="never-opened")
            await reaches(api, waiting["id"], "running")
        started = {t.get_name() for t in asyncio.all_tasks() - before}
        assert any(name.startswith("listen:procrastinate_queue_v1#") for name in started), started
    left = {t.get_name() for t in asyncio.all_tasks() - before if not t.done()}
    assert left == set(), f"tasks still running after the app stopped: {sorted(left)}"
