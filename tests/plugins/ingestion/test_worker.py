"""A `faas worker` process killed while it stores a document: another worker finishes the job, and the collection
holds every chunk exactly once (the parts written before the kill are replaced, not added to)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import eventually
from tests.harness import deploy
from tests.plugins.ingestion.conftest import RAG, finished, new_collection, upload

ROOT = Path(__file__).resolve().parents[3]
PLUGINS = ("gateway", "rag", "ingestion")


@pytest.fixture
def workers() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def spawn(workers: list[subprocess.Popen[bytes]], database_url: str, cwd: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAAS_") and k != "DATABASE_URL"}
    env.update(
        DATABASE_URL=database_url,
        FAAS_PLUGINS=",".join(PLUGINS),
        FAAS_JOBS_STALLED_SECONDS="2",
        FAAS_JOBS_SHUTDOWN_SECONDS="1",
        FAAS_INGESTION_EMBED_BATCH="50",
        PYTHONPATH=str(ROOT),
    )
    with (cwd / f"worker-{len(workers)}.log").open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "app.cli", "worker"], env=env, cwd=cwd, stdout=log, stderr=log)
    workers.append(proc)
    return proc


@pytest.mark.slow
async def test_a_worker_killed_mid_job_leaves_a_job_another_finishes_without_duplicates(
    database_url: str, workers: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    async with deploy(database_url, mode="direct", plugins=PLUGINS) as d:  # no worker in this app
        _, api = await d.api()
        coll = (await new_collection(api, chunking={"size": 16, "overlap": 0.0}))["id"]
        text = "\n\n".join(f"Paragraph {i} of the long manual describes step {i} in a few words." for i in range(600))
        [job] = await upload(api, coll, ("manual.md", text.encode()))

        first = spawn(workers, database_url, tmp_path)

        async def storing() -> None:
            got = (await api.get(f"/api/v1/jobs/{job['id']}")).json()
            assert got["stage"] == "storing" and got["progress"] > 90, got
            written = (await api.get(f"{RAG}/{coll}")).json()["document_count"]
            assert written >= 2, written  # some parts are in, the document is not complete

        await eventually(storing, within=120, interval=0.02)
        first.send_signal(signal.SIGKILL)
        assert first.wait(timeout=10) == -signal.SIGKILL
        partial = (await api.get(f"{RAG}/{coll}")).json()
        assert 0 < partial["document_count"] < 6, partial

        second = spawn(workers, database_url, tmp_path)
        done = await finished(api, job["id"], within=180)
        assert done["status"] == "succeeded" and done["attempts"] == 2, done
        assert done["result"]["chunk_count"] == 600 and done["result"]["parts"] == 6
        info = (await api.get(f"{RAG}/{coll}")).json()
        assert info["document_count"] == 6 and info["chunk_count"] == 600
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0
