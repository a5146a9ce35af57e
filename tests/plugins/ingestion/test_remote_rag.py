"""Ingestion direct with the rag plugin remote: the job's chunks, vectors and pages reach the other deployment
through the rag interface over HTTP, unchanged."""

from __future__ import annotations

from app.main import create_app
from tests.conftest import INTERNAL_SECRET, make_settings, serve_app
from tests.plugins.ingestion.conftest import RAG, chunks, finished, new_collection, upload, with_remote_rag
from tests.plugins.ingestion.documents import pdf


async def test_a_remote_rag_receives_the_chunks_with_their_pages(database_url: str) -> None:
    rag_app = create_app(make_settings(database_url, FAAS_PLUGINS="gateway,rag", FAAS_INTERNAL_SECRET=INTERNAL_SECRET))
    async with serve_app(rag_app) as rag_url, with_remote_rag(database_url, rag_url) as api:
        coll = (await new_collection(api, "manuals"))["id"]
        [job] = await upload(api, "manuals", ("m.pdf", pdf(["Cover page.", "Owls hunt silently at night."])))
        done = await finished(api, job["id"])
        assert done["status"] == "succeeded", done
        found = await chunks(api, coll, done["result"]["document_id"])
        assert [(c["page"], c["text"]) for c in found] == [
            (1, "Cover page."),
            (2, "Owls hunt silently at night."),
        ]
        hits = (await api.post(f"{RAG}/{coll}/search", json={"query": "owls at night", "mode": "dense"})).json()
        assert hits["hits"][0]["page"] == 2
