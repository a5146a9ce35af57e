"""The direct (in-process) ingestion service, opened by `open_direct(ctx)`: accepts uploads and URLs as jobs.

The job itself (`ingestion.document`) is in plugins/ingestion/jobs.py. The rag collection is reached only through
the rag plugin's interface (`services.get(RAG)`), so a remote rag works unchanged.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from app.db import Database
from app.errors import InvalidInput, NotFound, PayloadTooLarge
from app.jobs import JobQueue, JobStatus
from app.plugin_kit import LocalDescription, PluginInfo, Readiness
from app.plugins import PluginContext, Services
from plugins.ingestion.config import IngestionConfig
from plugins.ingestion.fetch import FetchPolicy, FetchRefused, check_url
from plugins.ingestion.parsers import FORMATS
from plugins.ingestion.processes import ParserProcesses
from plugins.ingestion.schemas import (
    IngestionJobList,
    IngestionJobPublic,
    JobAccepted,
    JobsAccepted,
    Upload,
    UrlIngestIn,
)
from plugins.ingestion.store import IngestionStore, ListedRow
from plugins.rag.interface import RAG

KIND = "ingestion.document"
CAPABILITIES: tuple[str, ...] = (*(f"format:{f}" for f in FORMATS), "source:upload", "source:url")
_RESOURCE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:~-]{0,127}$")
# Hashing a large upload leaves the event loop (hashlib releases the GIL for large buffers).
OFF_LOOP_BYTES = 1024 * 1024


def document_id(source_key: str) -> str:
    """The rag document id of a source: the same file name (or URL) in a collection is the same document."""
    return "ing_" + hashlib.sha256(source_key.encode()).hexdigest()[:32]


async def sha256(data: bytes) -> str:
    if len(data) > OFF_LOOP_BYTES:
        return await asyncio.to_thread(lambda: hashlib.sha256(data).hexdigest())
    return hashlib.sha256(data).hexdigest()


def _listed(row: ListedRow) -> IngestionJobPublic:
    s = row.source
    return IngestionJobPublic(
        id=s.job_id,
        status=row.status,  # type: ignore[arg-type]  # the jobs table's CHECK holds the same five values
        stage=row.stage,
        progress=row.progress,
        error=row.error,
        result=row.result,
        collection_id=s.collection_id,
        filename=s.filename,
        url=s.url,
        document_id=s.document_id,
        sha256=s.sha256,
        size=s.size,
        created_at=s.created_at,
        finished_at=row.finished_at,
    )


class DirectIngestionService:
    def __init__(self, *, ctx: PluginContext, config: IngestionConfig, about: LocalDescription) -> None:
        self.config = config
        self.db: Database = ctx.db
        self.store = IngestionStore(ctx.db)
        self.services: Services = ctx.services
        self._jobs: JobQueue = ctx.jobs
        self._about = about
        self.parsers = ParserProcesses()

    async def describe(self) -> PluginInfo:
        return self._about.info()

    async def ready(self) -> Readiness:
        return {"ok": True}

    @property
    def fetch_policy(self) -> FetchPolicy:
        c = self.config
        return FetchPolicy(
            max_bytes=c.fetch_max_bytes,
            timeout_seconds=c.fetch_timeout_seconds,
            max_redirects=c.fetch_max_redirects,
            allow_loopback=c.fetch_allow_loopback,
        )

    async def collection_id(self, tenant_id: str, ref: str) -> str:
        """The id of the tenant's collection whose id or name is `ref`, through the rag interface."""
        rag = self.services.get(RAG)
        if _RESOURCE_ID.match(ref):
            try:
                return (await rag.get_collection(tenant_id=tenant_id, collection_id=ref)).id
            except (NotFound, InvalidInput):
                pass
        cursor: str | None = None
        for _ in range(1000):  # 100,000 collections, a page of 100 at a time
            page = await rag.list_collections(tenant_id=tenant_id, limit=100, cursor=cursor)
            for c in page.data:
                if c.name == ref:
                    return c.id
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        raise NotFound(f"no rag collection has the id or name {ref!r}")

    async def _still_there(self, tenant_id: str, collection_id: str, job_id: str, status: str, doc: str) -> bool:
        """Whether a job with the same content stands for it: it is still to run, or the document it wrote is in
        the collection with that content (it may have been deleted or replaced since)."""
        if status != "succeeded":
            return True
        try:
            found = await self.services.get(RAG).get_document(
                tenant_id=tenant_id, collection_id=collection_id, document_id=doc
            )
        except NotFound:
            return False
        job = await self._jobs.get_job(tenant_id=tenant_id, job_id=job_id)
        return bool(job.result) and found.metadata.get("sha256") == job.result.get("sha256")

    async def _accept(
        self,
        *,
        tenant_id: str,
        collection_id: str,
        kind: str,
        filename: str | None,
        url: str | None,
        content_type: str | None,
        content: bytes | None,
    ) -> JobAccepted:
        digest = None if content is None else await sha256(content)
        if digest is not None:
            same = await self.store.find_same_content(tenant_id=tenant_id, collection_id=collection_id, sha256=digest)
            if same is not None and await self._still_there(tenant_id, collection_id, *same):
                return JobAccepted(
                    id=same[0],
                    status=same[1],  # type: ignore[arg-type]
                    filename=filename,
                    url=url,
                    collection_id=collection_id,
                    duplicate=True,
                )
        key = f"file:{filename}" if kind == "upload" else f"url:{url}"
        # The source and its job commit together: a worker never starts a job whose bytes are missing, and an
        # acknowledged upload is in PostgreSQL before the 202.
        async with self.db.transaction():
            job = await self._jobs.enqueue(tenant_id=tenant_id, kind=KIND, payload={"collection_id": collection_id})
            await self.store.insert_source(
                job_id=job.id,
                tenant_id=tenant_id,
                collection_id=collection_id,
                kind=kind,
                filename=filename,
                url=url,
                source_key=key,
                document_id=document_id(key),
                content_type=content_type,
                sha256=digest,
                content=content,
            )
        return JobAccepted(id=job.id, status=job.status, filename=filename, url=url, collection_id=collection_id)

    async def ingest_files(self, *, tenant_id: str, collection: str, files: list[Upload]) -> JobsAccepted:
        coll = await self.collection_id(tenant_id, collection)
        if not files:
            raise InvalidInput("send at least one file in the `file` field")
        if len(files) > self.config.max_files:
            raise PayloadTooLarge(
                f"{len(files)} files in one request; the limit is {self.config.max_files} (FAAS_INGESTION_MAX_FILES)"
            )
        for f in files:
            if len(f.data) > self.config.max_upload_bytes:
                raise PayloadTooLarge(
                    f"file {f.filename!r} is {len(f.data):,} bytes; the limit is {self.config.max_upload_bytes:,} "
                    "(FAAS_INGESTION_MAX_UPLOAD_BYTES)"
                )
            if not f.data:
                raise InvalidInput(f"file {f.filename!r} is empty")
        jobs = [
            await self._accept(
                tenant_id=tenant_id,
                collection_id=coll,
                kind="upload",
                filename=f.filename,
                url=None,
                content_type=f.content_type,
                content=f.data,
            )
            for f in files
        ]
        return JobsAccepted(jobs=jobs)

    async def ingest_url(self, *, tenant_id: str, request: UrlIngestIn) -> JobsAccepted:
        coll = await self.collection_id(tenant_id, request.collection)
        # What can be refused without DNS is refused now (scheme, credentials, an address written in the URL);
        # a name is resolved and checked by the job, right before it connects.
        try:
            await check_url(request.url, _no_dns, self.fetch_policy)
        except _NeedsDns:
            pass
        except FetchRefused as exc:
            raise InvalidInput(str(exc)) from None
        job = await self._accept(
            tenant_id=tenant_id,
            collection_id=coll,
            kind="url",
            filename=None,
            url=request.url,
            content_type=None,
            content=None,
        )
        return JobsAccepted(jobs=[job])

    async def list_jobs(
        self,
        *,
        tenant_id: str,
        status: JobStatus | None = None,
        collection: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> IngestionJobList:
        coll = None if collection is None else await self.collection_id(tenant_id, collection)
        page = await self.store.list_jobs(
            tenant_id=tenant_id, status=status, collection_id=coll, limit=limit, cursor=cursor
        )
        return IngestionJobList(data=[_listed(r) for r in page.items], next_cursor=page.next_cursor)


class _NeedsDns(Exception):
    pass


async def _no_dns(host: str, port: int) -> list[str]:
    raise _NeedsDns


@asynccontextmanager
async def open_direct(ctx: PluginContext) -> AsyncIterator[DirectIngestionService]:
    yield DirectIngestionService(
        ctx=ctx, config=IngestionConfig.load(ctx.settings), about=LocalDescription(ctx, CAPABILITIES)
    )
