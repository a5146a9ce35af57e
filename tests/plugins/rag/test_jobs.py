"""Large batches are indexed by a `rag.index` job on the core queue: the answer names the job, and the documents
become searchable, all at once, when it succeeds; both modes (the job runs where the rag plugin runs direct)."""

from __future__ import annotations

from typing import Any

from tests.conftest import Deployer, eventually
from tests.plugins.rag.conftest import URL, new_collection, search
from tests.plugins.rag.test_api import ANIMALS


async def test_a_large_batch_is_indexed_by_a_job(deploy_app: Deployer) -> None:
    async with deploy_app(env={"FAAS_RAG_SYNC_MAX_CHUNKS": "2", "FAAS_JOBS_WORKER": "on"}) as d:
        _, api = await d.api()
        coll = (await new_collection(api))["id"]
        r = await api.post(f"{URL}/{coll}/documents", json=ANIMALS[:2])
        assert r.status_code == 201 and r.json()["searchable"] is True and r.json()["job_id"] is None
        r = await api.post(f"{URL}/{coll}/documents", json=ANIMALS[2:])
        assert r.status_code == 202, r.text
        added = r.json()
        assert added["searchable"] is False and added["chunk_count"] == 3
        assert added["document_ids"] == ["owl", "shark", "loup"]

        async def succeeded() -> dict[str, Any]:
            job = (await api.get(f"/api/v1/jobs/{added['job_id']}")).json()
            assert job["status"] == "succeeded", job
            return dict(job)

        job = await eventually(succeeded, within=60)
        assert job["kind"] == "rag.index" and job["result"]["chunk_count"] == 3
        for mode in ("keyword", "dense", "hybrid"):
            hits = await search(api, coll, "sharks cartilage skeleton", mode=mode, top_k=5)
            assert hits[0]["document_id"] == "shark", mode
        assert (await api.get(f"{URL}/{coll}")).json()["document_count"] == 5
        # Another tenant cannot read the job.
        _, other = await d.api()
        assert (await other.get(f"/api/v1/jobs/{added['job_id']}")).status_code == 404
