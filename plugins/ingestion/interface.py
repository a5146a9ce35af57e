"""The ingestion service's contract: `IngestionService`, the one module another plugin may import (for types)."""

from __future__ import annotations

from typing import Protocol

from app.jobs import JobStatus
from app.plugin_kit import PluginService
from app.plugins import ServiceKey
from plugins.ingestion.schemas import IngestionJobList, JobsAccepted, Upload, UrlIngestIn

__all__ = ["INGESTION", "IngestionJobList", "IngestionService", "JobsAccepted", "Upload", "UrlIngestIn"]


class IngestionService(PluginService, Protocol):
    """What the ingestion plugin offers to endpoints and to other plugins, in either mode: documents in (uploads or
    URLs), parsed, chunked and embedded on durable jobs (`ingestion.document`, one per document), into a rag
    collection through the rag plugin's interface.

    Every method is scoped to `tenant_id`; another tenant's collection or job answers NotFound like a missing one.
    A job's stages are `fetching` (URLs), `parsing`, `chunking`, `embedding`, `storing`, with a percentage; it ends
    `succeeded` (its result names the document and its chunks) or `failed` with a reason (an unsupported or damaged
    file, a refused URL). A document's id comes from its source (the file name, or the URL): the same source with
    changed content replaces that document; the same content sent again to the same collection is not ingested
    twice.
    """

    async def ingest_files(self, *, tenant_id: str, collection: str, files: list[Upload]) -> JobsAccepted:
        """Store each file (durably, before answering) and queue one job per file. `collection` is a rag
        collection's id or name (NotFound when neither). PayloadTooLarge for a file over FAAS_INGESTION_MAX_UPLOAD_BYTES
        or more files than FAAS_INGESTION_MAX_FILES; InvalidInput for an empty file or none at all. A file whose
        content this collection already has (from a job not failed) answers that job, `duplicate` true."""
        ...

    async def ingest_url(self, *, tenant_id: str, request: UrlIngestIn) -> JobsAccepted:
        """Queue one job that fetches the URL under the SSRF guard (plugins/ingestion/fetch.py). InvalidInput for a
        URL that is not http(s) or names a refused address literally; one that resolves to a refused address fails
        its job with the reason."""
        ...

    async def list_jobs(
        self,
        *,
        tenant_id: str,
        status: JobStatus | None = None,
        collection: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> IngestionJobList:
        """This plugin's jobs, newest first, optionally in one status and for one collection (id or name)."""
        ...


INGESTION: ServiceKey[IngestionService] = ServiceKey("ingestion")
