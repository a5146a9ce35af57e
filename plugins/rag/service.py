"""The direct (in-process) rag service, opened by `open_direct(ctx)`.

Embeddings and generation go through the gateway's interface (`services.get(GATEWAY)`), so a remote gateway
works unchanged. Chunking runs off the event loop when the batch is large; the SQL (BM25 as sparse vectors,
HNSW or exact dense search, rank fusion) lives in store.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from app.errors import InvalidInput, UpstreamFailed
from app.jobs import JobContext
from app.plugin_kit import LocalDescription, PluginInfo, Readiness
from app.plugins import PluginContext, Services
from app.tenancy import new_id
from plugins.gateway.interface import GATEWAY, ChatCompletionIn, GenerateIn
from plugins.rag import grounding, jobs
from plugins.rag.chunking import chunk_text
from plugins.rag.config import RagConfig
from plugins.rag.schemas import (
    DEFAULT_EMBEDDING_MODEL,
    AnswerIn,
    AnswerOut,
    AnyOf,
    Chunking,
    ChunkPublic,
    CollectionCreate,
    CollectionList,
    CollectionPublic,
    DocumentDetail,
    DocumentIn,
    DocumentList,
    DocumentPublic,
    DocumentsAdded,
    Hit,
    SearchIn,
    SearchOut,
)
from plugins.rag.store import CollectionRow, DocumentRow, NewChunk, NewDocument, RagStore, Search

CAPABILITIES = ("search:dense", "search:keyword", "search:hybrid", "answer", "answer:stream")
# Characters of text above which chunking leaves the event loop.
OFF_LOOP_CHARS = 50_000


def _collection(row: CollectionRow) -> CollectionPublic:
    return CollectionPublic(
        id=row.id,
        name=row.name,
        embedding_model=row.embedding_model,
        dimensions=row.dims,
        chunking=Chunking(size=row.chunk_size, overlap=row.chunk_overlap),
        document_count=row.document_count,
        chunk_count=row.chunk_count,
        created_at=row.created_at,
    )


def _document(row: DocumentRow) -> DocumentPublic:
    return DocumentPublic(
        id=row.id,
        metadata=row.metadata,
        chunk_count=row.chunk_count,
        length=row.length,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _filters(filters: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """Each condition as the metadata objects one of which a chunk must contain (a value, or a list holding it)."""
    out: list[list[dict[str, Any]]] = []
    for key, cond in filters.items():
        values = cond.any if isinstance(cond, AnyOf) else [cond]
        out.append([alt for v in values for alt in ({key: v}, {key: [v]})])
    return out


def _build(documents: list[DocumentIn], size: int, overlap: int, dims: int, model: str) -> list[NewDocument]:
    """Group parts by document id (in order), chunk them, and check any vectors given with them."""
    grouped: dict[str, list[DocumentIn]] = {}
    for d in documents:
        grouped.setdefault(d.id or new_id("doc"), []).append(d)
    built: list[NewDocument] = []
    for doc_id, parts in grouped.items():
        metadata: dict[str, Any] = {}
        for part in parts:
            metadata.update(part.metadata)
        chunks: list[NewChunk] = []
        for part in parts:
            if part.embedding_model is not None and part.embedding_model != model:
                raise InvalidInput(
                    f"document {doc_id!r}: vectors of {part.embedding_model!r} cannot join this collection, "
                    f"which is pinned to {model!r}"
                )
            pieces = chunk_text(part.text, size=size, overlap=overlap)
            if part.embedding is not None:
                if len(part.embedding) != dims:
                    raise InvalidInput(
                        f"document {doc_id!r}: the embedding has {len(part.embedding)} dimensions; this collection "
                        f"holds {dims}-dimensional vectors of {model!r}"
                    )
                if len(pieces) > 1:
                    raise InvalidInput(
                        f"document {doc_id!r}: a part sent with its own embedding must fit in one chunk "
                        f"({size} words); send it without one to have it chunked and embedded here"
                    )
            for piece in pieces:
                chunks.append(
                    NewChunk(
                        document_id=doc_id,
                        seq=len(chunks),
                        text=piece.text,
                        metadata=metadata,
                        page=part.page,
                        heading=part.heading,
                        start=piece.start,
                        end=piece.end,
                        embedding=list(part.embedding) if part.embedding is not None else [],
                    )
                )
        chunks = [NewChunk(**{**c.__dict__, "metadata": metadata}) for c in chunks]
        built.append(NewDocument(id=doc_id, metadata=metadata, length=sum(len(p.text) for p in parts), chunks=chunks))
    return built


class DirectRagService:
    def __init__(self, *, ctx: PluginContext, config: RagConfig, about: LocalDescription) -> None:
        self.store = RagStore(ctx.db)
        self.config = config
        self._services: Services = ctx.services
        self._jobs = ctx.jobs
        self._about = about

    async def describe(self) -> PluginInfo:
        return self._about.info()

    async def ready(self) -> Readiness:
        return {"ok": True}

    async def _embed(
        self, tenant_id: str, model: str, texts: list[str], dims: int | None, job: JobContext | None = None
    ) -> list[list[float]]:
        gateway = self._services.get(GATEWAY)
        vectors: list[list[float]] = []
        batch = self.config.embed_batch
        for i in range(0, len(texts), batch):
            if job is not None:
                job.raise_if_cancelled()
                await job.progress("embedding", 95 * i / len(texts))
            vectors += await gateway.embed_texts(tenant_id=tenant_id, texts=texts[i : i + batch], model=model)
        if dims is not None and any(len(v) != dims for v in vectors):
            raise UpstreamFailed(
                f"the gateway's model {model!r} returned vectors of another dimension than this collection's {dims}"
            )
        return vectors

    # ---- collections ---------------------------------------------------------------------------------------

    async def create_collection(self, *, tenant_id: str, collection: CollectionCreate) -> CollectionPublic:
        model = collection.embedding_model or DEFAULT_EMBEDDING_MODEL
        # The gateway's NotFound (no such embedding model for this tenant) is the answer: nothing is stored.
        [probe] = await self._embed(tenant_id, model, ["dimension probe"], None)
        row = await self.store.insert_collection(
            tenant_id=tenant_id,
            name=collection.name,
            model=model,
            dims=len(probe),
            size=collection.chunking.size,
            overlap=collection.chunking.overlap,
        )
        return _collection(row)

    async def list_collections(self, *, tenant_id: str, limit: int = 20, cursor: str | None = None) -> CollectionList:
        page = await self.store.list_collections(tenant_id=tenant_id, limit=limit, cursor=cursor)
        return CollectionList(data=[_collection(r) for r in page.items], next_cursor=page.next_cursor)

    async def get_collection(self, *, tenant_id: str, collection_id: str) -> CollectionPublic:
        return _collection(await self.store.get_collection(tenant_id=tenant_id, collection_id=collection_id))

    async def delete_collection(self, *, tenant_id: str, collection_id: str) -> None:
        await self.store.delete_collection(tenant_id=tenant_id, collection_id=collection_id)

    # ---- documents -----------------------------------------------------------------------------------------

    async def add_documents(self, *, tenant_id: str, collection_id: str, documents: list[DocumentIn]) -> DocumentsAdded:
        coll = await self.store.get_collection(tenant_id=tenant_id, collection_id=collection_id)
        overlap = Chunking(size=coll.chunk_size, overlap=coll.chunk_overlap).overlap_words
        args = (documents, coll.chunk_size, overlap, coll.dims, coll.embedding_model)
        if sum(len(d.text) for d in documents) > OFF_LOOP_CHARS:
            built = await asyncio.to_thread(_build, *args)
        else:
            built = _build(*args)
        ids = [d.id for d in built]
        chunks = sum(len(d.chunks) for d in built)
        if sum(1 for d in built for c in d.chunks if not c.embedding) > self.config.sync_max_chunks:
            payload = await asyncio.to_thread(jobs.to_payload, collection_id, built)
            job = await self._jobs.enqueue(tenant_id=tenant_id, kind=jobs.KIND, payload=payload)
            return DocumentsAdded(document_ids=ids, chunk_count=chunks, searchable=False, job_id=job.id)
        written = await self.index_documents(tenant_id=tenant_id, collection_id=collection_id, documents=built)
        return DocumentsAdded(document_ids=ids, chunk_count=written["chunk_count"], searchable=True)

    async def index_documents(
        self, *, tenant_id: str, collection_id: str, documents: list[NewDocument], job: JobContext | None = None
    ) -> dict[str, Any]:
        """Embed the chunks that have no vector yet, then write the documents (replacing any with their ids) in
        one transaction: before answering (small batches) or in the `rag.index` job (large ones)."""
        coll = await self.store.get_collection(tenant_id=tenant_id, collection_id=collection_id)
        missing = [c for d in documents for c in d.chunks if not c.embedding]
        vectors = await self._embed(tenant_id, coll.embedding_model, [c.text for c in missing], coll.dims, job)
        for chunk, vector in zip(missing, vectors, strict=True):
            chunk.embedding.extend(vector)

        async def write() -> int:
            return await self.store.replace_documents(
                tenant_id=tenant_id, collection_id=collection_id, documents=documents
            )

        written = await (job.step("write", write, transactional=True) if job is not None else write())
        return {"document_ids": [d.id for d in documents], "chunk_count": int(written)}

    async def list_documents(
        self, *, tenant_id: str, collection_id: str, limit: int = 20, cursor: str | None = None
    ) -> DocumentList:
        page = await self.store.list_documents(
            tenant_id=tenant_id, collection_id=collection_id, limit=limit, cursor=cursor
        )
        return DocumentList(data=[_document(r) for r in page.items], next_cursor=page.next_cursor)

    async def get_document(self, *, tenant_id: str, collection_id: str, document_id: str) -> DocumentDetail:
        row, chunks = await self.store.get_document(
            tenant_id=tenant_id, collection_id=collection_id, document_id=document_id
        )
        return DocumentDetail(
            **_document(row).model_dump(),
            chunks=[
                ChunkPublic(
                    chunk_id=str(c.id), seq=c.seq, text=c.text, page=c.page, heading=c.heading, start=c.start, end=c.end
                )
                for c in chunks
            ],
        )

    async def delete_document(self, *, tenant_id: str, collection_id: str, document_id: str) -> None:
        await self.store.delete_document(tenant_id=tenant_id, collection_id=collection_id, document_id=document_id)

    # ---- retrieval and answers -----------------------------------------------------------------------------

    async def search(self, *, tenant_id: str, collection_id: str, request: SearchIn) -> SearchOut:
        coll = await self.store.get_collection(tenant_id=tenant_id, collection_id=collection_id)
        vector = None
        if request.mode != "keyword":
            [vector] = await self._embed(tenant_id, coll.embedding_model, [request.query], coll.dims)
        rows = await self.store.search(
            Search(
                tenant_id=tenant_id,
                collection=coll,
                query=request.query,
                vector=vector,
                mode=request.mode,
                top_k=request.top_k,
                filters=_filters(request.filters),
                dense_weight=request.weights.dense,
                keyword_weight=request.weights.keyword,
                fusion=request.fusion,
                rrf_k=request.rrf_k,
                exact=coll.chunk_count <= self.config.exact_search_max_chunks,
                ef_search=max(self.config.hnsw_ef_search, request.top_k),
            )
        )
        return SearchOut(
            hits=[
                Hit(
                    document_id=r.document_id,
                    chunk_id=str(r.id),
                    text=r.text,
                    score=r.score,
                    metadata=r.metadata,
                    page=r.page,
                    heading=r.heading,
                )
                for r in rows
            ]
        )

    async def _retrieve(self, tenant_id: str, collection_id: str, request: AnswerIn) -> list[Hit]:
        query = SearchIn.model_validate(request.model_dump(include=set(SearchIn.model_fields)))
        return (await self.search(tenant_id=tenant_id, collection_id=collection_id, request=query)).hits

    async def answer(self, *, tenant_id: str, collection_id: str, request: AnswerIn) -> AnswerOut:
        hits = await self._retrieve(tenant_id, collection_id, request)
        if request.retrieval_only:
            return AnswerOut(answer=None, citations=[], passages=hits)
        out = await self._services.get(GATEWAY).generate(
            tenant_id=tenant_id,
            request=GenerateIn(
                prompt=grounding.prompt(request.query, hits),
                system=grounding.SYSTEM,
                model=request.model,
                max_tokens=request.max_tokens,
            ),
        )
        return AnswerOut(answer=out.text, citations=grounding.citations(out.text, hits), passages=hits, model=out.model)

    async def answer_stream(self, *, tenant_id: str, collection_id: str, request: AnswerIn) -> AsyncIterator[bytes]:
        hits = await self._retrieve(tenant_id, collection_id, request)
        passages = grounding.event("passages", {"passages": [h.model_dump(mode="json") for h in hits]})
        if request.retrieval_only:
            return _events(passages, grounding.event("citations", {"citations": []}), grounding.event("done", {}))
        chunks = await self._services.get(GATEWAY).stream(
            tenant_id=tenant_id,
            request=ChatCompletionIn.model_validate(
                {
                    "model": request.model,
                    "messages": [
                        {"role": "system", "content": grounding.SYSTEM},
                        {"role": "user", "content": grounding.prompt(request.query, hits)},
                    ],
                    "stream": True,
                    "max_tokens": request.max_tokens,
                }
            ),
        )
        return _generated(passages, chunks, hits)


async def _events(*events: bytes) -> AsyncIterator[bytes]:
    for e in events:
        yield e


async def _generated(passages: bytes, chunks: AsyncIterator[bytes], hits: list[Hit]) -> AsyncIterator[bytes]:
    yield passages
    text: list[str] = []
    try:
        async for delta in grounding.deltas(chunks):
            if isinstance(delta, dict):
                yield grounding.event("error", delta)
                return
            text.append(delta)
            yield grounding.event("delta", {"text": delta})
    finally:
        close = getattr(chunks, "aclose", None)
        if close is not None:  # the client went away: stop the generation upstream too
            await close()
    answer = "".join(text)
    cited = grounding.citations(answer, hits)
    yield grounding.event("citations", {"citations": [c.model_dump(mode="json") for c in cited], "answer": answer})
    yield grounding.event("done", {})


@asynccontextmanager
async def open_direct(ctx: PluginContext) -> AsyncIterator[DirectRagService]:
    yield DirectRagService(ctx=ctx, config=RagConfig.load(ctx.settings), about=LocalDescription(ctx, CAPABILITIES))
