"""The `rag.index` job: embed and index a batch of documents too large to embed before answering.

The payload holds the chunked documents with their final ids, so running the job again (a worker died) only
replaces the same documents with the same chunks: nothing is duplicated. Embedding goes through the gateway in
batches, with progress; the write is one transactional step, so a search sees the old documents or all the new
ones, never a part.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Any

from app.errors import Unavailable
from app.jobs import JobContext
from plugins.rag.interface import RAG
from plugins.rag.store import NewChunk, NewDocument

KIND = "rag.index"


def to_payload(collection_id: str, documents: list[NewDocument]) -> dict[str, Any]:
    return {"collection_id": collection_id, "documents": [asdict(d) for d in documents]}


def from_payload(payload: dict[str, Any]) -> tuple[str, list[NewDocument]]:
    docs = [
        NewDocument(
            id=d["id"],
            metadata=d["metadata"],
            length=d["length"],
            chunks=[NewChunk(**c) for c in d["chunks"]],
        )
        for d in payload["documents"]
    ]
    return payload["collection_id"], docs


async def index(ctx: JobContext) -> dict[str, Any]:
    from plugins.rag.service import DirectRagService  # the worker runs where the rag plugin runs direct

    rag = ctx.services.get(RAG)
    if not isinstance(rag, DirectRagService):
        raise Unavailable("rag.index runs only where the rag plugin runs direct")
    collection_id, documents = await asyncio.to_thread(from_payload, ctx.job.payload)
    return await rag.index_documents(
        tenant_id=ctx.job.tenant_id, collection_id=collection_id, documents=documents, job=ctx
    )
