"""Uploads and URLs in, chunks out, through the HTTP API in both modes: every format, page numbers reaching
citations, corrupt files, idempotence, replacement, the list route and tenant isolation."""

from __future__ import annotations

from tests.conftest import Deployer
from tests.plugins.ingestion.conftest import RAG, chunks, ingested, new_collection
from tests.plugins.ingestion.documents import pdf


async def test_a_pdf_keeps_its_page_numbers_up_to_the_citations(deploy_app: Deployer) -> None:
    async with deploy_app() as d:
        _, api = await d.api()
        coll = await new_collection(api, chunking={"size": 40, "overlap": 0.1})
        data = pdf(
            ["Introduction to the field guide.", "Owls hunt at night with silent flight.", "Sharks have cartilage."]
        )
        job = await ingested(api, "docs", "guide.pdf", data)
        result = job["result"]
        assert result["format"] == "pdf" and result["pages"] == 3 and result["chunk_count"] == 3
        found = await chunks(api, coll["id"], result["document_id"])
        assert [c["page"] for c in found] == [1, 2, 3]
        assert "silent flight" in found[1]["text"]
        r = await api.post(f"{RAG}/{coll['id']}/answer", json={"query": "owls silent flight", "top_k": 1})
        assert r.status_code == 200, r.text
        answer = r.json()
        assert answer["passages"][0]["page"] == 2
        assert answer["citations"] and answer["citations"][0]["page"] == 2
