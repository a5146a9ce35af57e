"""The rag service's contract: `RagService`, the one module another plugin may import (for types).

Other plugins (agents, ingestion) reach it as `services.get(RAG)`; the request and response types it takes are
re-exported here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from app.plugin_kit import PluginService
from app.plugins import ServiceKey
from plugins.rag.schemas import (
    AnswerIn,
    AnswerOut,
    CollectionCreate,
    CollectionList,
    CollectionPublic,
    DocumentDetail,
    DocumentIn,
    DocumentList,
    DocumentsAdded,
    SearchIn,
    SearchOut,
)

__all__ = [
    "RAG",
    "AnswerIn",
    "AnswerOut",
    "CollectionCreate",
    "CollectionList",
    "CollectionPublic",
    "DocumentDetail",
    "DocumentIn",
    "DocumentList",
    "DocumentsAdded",
    "RagService",
    "SearchIn",
    "SearchOut",
]


class RagService(PluginService, Protocol):
    """What the rag plugin offers to endpoints and to other plugins, in either mode: collections, documents,
    hybrid retrieval and grounded answers.

    Every method is scoped to `tenant_id`: another tenant's collection answers NotFound, exactly like a missing
    one, and no search, count or answer ever reads another tenant's chunks. Embeddings and generation go through
    the gateway's interface on behalf of the same tenant (its limits and ledger apply).
    """

    async def create_collection(self, *, tenant_id: str, collection: CollectionCreate) -> CollectionPublic:
        """A collection pinned to one embedding model and its dimension (learnt from the gateway now).
        Conflict when the name is taken; InvalidInput when the gateway has no such embedding model."""
        ...

    async def list_collections(self, *, tenant_id: str, limit: int = 20, cursor: str | None = None) -> CollectionList:
        """Collections by id, a page at a time."""
        ...

    async def get_collection(self, *, tenant_id: str, collection_id: str) -> CollectionPublic:
        """One collection with its document and chunk counts."""
        ...

    async def delete_collection(self, *, tenant_id: str, collection_id: str) -> None:
        """Delete the collection with every document and chunk."""
        ...

    async def add_documents(self, *, tenant_id: str, collection_id: str, documents: list[DocumentIn]) -> DocumentsAdded:
        """Chunk, embed (through the gateway, batched) and index up to 100 documents or document parts: before
        answering (`searchable`), or, past FAAS_RAG_SYNC_MAX_CHUNKS chunks to embed, in a `rag.index` job on the
        core queue whose id the answer carries (poll /api/v1/jobs/{id}; the documents appear when it succeeds,
        all at once). Items with
        one `id` are the parts of one document; an id the collection holds already is replaced, its old chunks
        removed and the new ones written in one transaction (a search sees the old or the new, never half).
        InvalidInput when a given embedding is of another model or dimension than the collection's."""
        ...

    async def list_documents(
        self, *, tenant_id: str, collection_id: str, limit: int = 20, cursor: str | None = None
    ) -> DocumentList:
        """Documents by id, a page at a time."""
        ...

    async def get_document(self, *, tenant_id: str, collection_id: str, document_id: str) -> DocumentDetail:
        """A document with its chunks in order."""
        ...

    async def delete_document(self, *, tenant_id: str, collection_id: str, document_id: str) -> None:
        """Delete a document: its chunks leave every index (dense, keyword, term statistics) at once."""
        ...

    async def search(self, *, tenant_id: str, collection_id: str, request: SearchIn) -> SearchOut:
        """The `top_k` best chunks for `request.query`: `keyword` ranks by BM25, `dense` by cosine similarity of
        the collection's embeddings, `hybrid` by weighted reciprocal rank fusion of the two; every filter must
        hold on the chunk's document metadata. Fewer than `top_k` only when fewer chunks match."""
        ...

    async def answer(self, *, tenant_id: str, collection_id: str, request: AnswerIn) -> AnswerOut:
        """Retrieve as `search` does, then generate with the passages numbered [1]..[n]; `citations` are the
        passages the answer cites that were actually retrieved (a number outside them is dropped).
        `retrieval_only` returns the passages without generating."""
        ...

    async def answer_stream(self, *, tenant_id: str, collection_id: str, request: AnswerIn) -> AsyncIterator[bytes]:
        """`answer` as server-sent events: `passages` first, then `delta` events with text, then `citations`,
        then `done` (or `error` when generation fails midway). Errors before the first event raise here."""
        ...


RAG: ServiceKey[RagService] = ServiceKey("rag")
