"""The `ingestion.document` job: fetch (URLs), parse, chunk, embed and store one document in its rag collection.

Parsing runs in a child process under a time limit (plugins/ingestion/processes.py), chunking in a thread; a
document that cannot be parsed fails its job with the parser's reason and never takes the worker down. Embeddings
come from the gateway's interface in batches (the `embedding` stage's percentage), retried after the pauses of
FAAS_INGESTION_RETRY_WAITS on a transient failure (unavailable, timed out, rate limited; a remote rag's service
client does not repeat a POST itself); the chunks, each with its vector, page and heading path, go to the rag
plugin through its interface (`add_documents`), with the same retries.

A document of more chunks than one rag call takes is written as parts `<id>~1`, `<id>~2`, ... and then `<id>`
itself last: `<id>`'s metadata (`sha256`, `parts`) marks the write complete. Running the job again (its worker
died) writes the same ids with the same chunks, so nothing is duplicated; a source whose content is unchanged is
not written again; parts a shorter new version no longer has are deleted.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

from app.errors import InvalidInput, NotFound, RateLimited, Unavailable, UpstreamFailed, UpstreamTimeout
from app.jobs import JobContext
from plugins.gateway.interface import GATEWAY
from plugins.ingestion.chunking import Chunk, chunk_blocks
from plugins.ingestion.fetch import FetchRefused, fetch, system_resolver
from plugins.ingestion.interface import INGESTION
from plugins.ingestion.parsers import Parsed, ParseError
from plugins.rag.interface import RAG, CollectionPublic, DocumentIn

T = TypeVar("T")
TRANSIENT = (Unavailable, UpstreamTimeout, RateLimited)
MAX_PARTS = 100  # rag's parts per call
MAX_VALUES = 60_000  # JSON values per call, well under the body budget of a remote rag (vectors dominate)
MAX_META_CHARS = 1000


async def _retrying(what: Callable[[], Awaitable[T]], waits: Sequence[float], doing: str) -> T:
    """`what()`, again after each pause of `waits` when it fails transiently (gateway or rag unavailable, timed
    out, rate limited); the last failure is raised as its own class, its detail saying what was being done."""
    for wait in waits:
        try:
            return await what()
        except TRANSIENT:
            await asyncio.sleep(wait)
    try:
        return await what()
    except TRANSIENT as exc:
        detail = f"{doing} failed {len(waits) + 1} times, the last time: {exc.detail}"
        raise type(exc)(detail, extra=exc.extra, headers=exc.headers) from exc


def _parse_name(filename: str | None, url: str | None) -> str | None:
    if filename:
        return filename
    path = urlsplit(url or "").path
    return path.rsplit("/", 1)[-1] or None


def _groups(chunks: list[Chunk], dims: int) -> list[list[Chunk]]:
    size = max(1, min(MAX_PARTS, MAX_VALUES // max(dims, 1)))
    return [chunks[i : i + size] for i in range(0, len(chunks), size)] or [[]]


async def ingest(ctx: JobContext) -> dict[str, Any]:
    from plugins.ingestion.service import DirectIngestionService

    service = ctx.services.get(INGESTION)
    if not isinstance(service, DirectIngestionService):
        raise Unavailable("ingestion jobs run only where the ingestion plugin runs direct")
    return await Ingestion(service, ctx).run()


class Ingestion:
    def __init__(self, service: Any, ctx: JobContext) -> None:
        self.service = service
        self.ctx = ctx
        self.tenant = ctx.job.tenant_id
        self.config = service.config

    async def run(self) -> dict[str, Any]:
        found = await self.service.store.get_source(tenant_id=self.tenant, job_id=self.ctx.job.id)
        if found is None:
            raise NotFound("the job's source is gone (its tenant or collection was deleted)")
        source, content = found
        content_type = source.content_type
        digest = source.sha256
        if content is None and source.kind == "upload":
            # The bytes are released once a run has stored the document; a run after that (its worker died
            # between the two) finds the document written.
            previous = await self._previous(source.document_id, source.collection_id)
            if previous is None or previous.get("sha256") != digest:
                raise NotFound("the upload's bytes are gone and its document is not in the collection")
            return {
                "document_id": source.document_id,
                "collection_id": source.collection_id,
                "format": previous.get("format"),
                "pages": previous.get("pages", 1),
                "sha256": digest,
                "chunk_count": previous.get("chunks", 0),
                "parts": previous.get("parts", 1),
                "unchanged": True,
            }
        if content is None:
            await self.ctx.progress("fetching", 0)
            try:
                fetched = await fetch(
                    source.url,
                    resolver=system_resolver(self.config.hosts()),
                    policy=self.service.fetch_policy,
                )
            except FetchRefused as exc:
                raise InvalidInput(f"{source.url}: {exc}") from None
            content, content_type = fetched.data, fetched.content_type
            digest = hashlib.sha256(content).hexdigest()
            await self.service.store.update_fetched(
                tenant_id=self.tenant, job_id=self.ctx.job.id, content=content, sha256=digest, content_type=content_type
            )
        assert digest is not None
        await self.ctx.progress("parsing", 10)
        name = _parse_name(source.filename, source.url)
        try:
            parsed: Parsed = await self.service.parsers.parse(
                content, filename=name, content_type=content_type, limit=self.config.parse_timeout_seconds
            )
        except ParseError as exc:
            raise InvalidInput(f"{name or 'the document'}: {exc}") from None
        rag = self.ctx.services.get(RAG)
        coll = await rag.get_collection(tenant_id=self.tenant, collection_id=source.collection_id)
        base = source.document_id
        previous = await self._previous(base, coll.id)
        summary = {
            "document_id": base,
            "collection_id": coll.id,
            "format": parsed.format,
            "pages": parsed.pages,
            "sha256": digest,
        }
        if previous is not None and previous.get("sha256") == digest:
            await self.service.store.release_content(tenant_id=self.tenant, job_id=self.ctx.job.id)
            return {
                **summary,
                "chunk_count": previous.get("chunks", 0),
                "parts": previous.get("parts", 1),
                "unchanged": True,
            }
        await self.ctx.progress("chunking", 25)
        chunks = await asyncio.to_thread(
            chunk_blocks, parsed.blocks, size=coll.chunking.size, overlap=coll.chunking.overlap_words
        )
        vectors = await self._embed(coll, [c.text for c in chunks])
        await self.ctx.progress("storing", 90)
        groups = _groups(chunks, coll.dimensions)
        meta: dict[str, Any] = {
            "source": (source.filename or source.url or "")[:MAX_META_CHARS],
            "document": base,
            "format": parsed.format,
            "sha256": digest,
            "parts": len(groups),
            "chunks": len(chunks),
            "pages": parsed.pages,
        }
        # Parts first, the document itself last: its metadata says the whole write is complete.
        first = 0
        starts = []
        for group in groups:
            starts.append(first)
            first += len(group)
        for k in [*range(1, len(groups)), 0]:
            doc_id = base if k == 0 else f"{base}~{k}"
            parts = [
                DocumentIn(
                    id=doc_id,
                    text=c.text,
                    metadata={**meta, "part": k},
                    page=c.page,
                    heading=(c.heading or "")[:MAX_META_CHARS] or None,
                    embedding=vectors[starts[k] + i],
                    embedding_model=coll.embedding_model,
                )
                for i, c in enumerate(groups[k])
            ]
            if parts:
                await _retrying(
                    lambda parts=parts: rag.add_documents(  # type: ignore[misc]
                        tenant_id=self.tenant, collection_id=coll.id, documents=parts
                    ),
                    self.config.waits(),
                    f"storing the chunks in the rag collection {coll.id}",
                )
            await self.ctx.progress("storing", 90 + 9 * (len(groups) - k) / len(groups))
        old_parts = int(previous.get("parts", 1)) if previous is not None else 1
        for k in range(len(groups), old_parts):
            try:
                await rag.delete_document(tenant_id=self.tenant, collection_id=coll.id, document_id=f"{base}~{k}")
            except NotFound:
                pass
        await self.service.store.release_content(tenant_id=self.tenant, job_id=self.ctx.job.id)
        return {**summary, "chunk_count": len(chunks), "parts": len(groups), "unchanged": False}

    async def _previous(self, base: str, collection_id: str) -> dict[str, Any] | None:
        """The metadata of the document this source wrote before, if any."""
        rag = self.ctx.services.get(RAG)
        try:
            page = await rag.get_document(tenant_id=self.tenant, collection_id=collection_id, document_id=base)
        except NotFound:
            return None
        return dict(page.metadata)

    async def _embed(self, coll: CollectionPublic, texts: list[str]) -> list[list[float]]:
        """Vectors in order, `embed_concurrency` gateway calls in flight (the local model computes one text per
        thread, so one call uses one core), in batches of at most `embed_batch`."""
        gateway = self.ctx.services.get(GATEWAY)
        lanes = self.config.embed_concurrency
        batch = max(1, min(self.config.embed_batch, -(-len(texts) // lanes)))
        starts = list(range(0, len(texts), batch))
        results: dict[int, list[list[float]]] = {}
        gate = asyncio.Semaphore(lanes)

        async def one(i: int) -> None:
            async with gate:
                self.ctx.raise_if_cancelled()
                part = texts[i : i + batch]
                results[i] = await _retrying(
                    lambda: gateway.embed_texts(tenant_id=self.tenant, texts=part, model=coll.embedding_model),
                    self.config.waits(),
                    f"embedding with the gateway's model {coll.embedding_model!r}",
                )
                await self.ctx.progress("embedding", 30 + 60 * len(results) / len(starts))

        await self.ctx.progress("embedding", 30)
        await asyncio.gather(*(one(i) for i in starts))
        vectors = [v for i in starts for v in results[i]]
        if any(len(v) != coll.dimensions for v in vectors):
            raise UpstreamFailed(
                f"the gateway's model {coll.embedding_model!r} returned vectors of another dimension than the "
                f"collection's {coll.dimensions}"
            )
        return vectors
