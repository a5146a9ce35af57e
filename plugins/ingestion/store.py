"""All SQL of the ingestion plugin: `ingestion_sources`, one row per job (see migration 0011_ingestion).

Invariants: every query filters on the tenant; a source row and its job are written in one transaction (the caller
enqueues inside `db.transaction()`), so neither exists without the other; an upload's bytes are in the row before
the job can start, and released once its document is stored (a URL source refetches if run again). The list joins
the core's `jobs` table for the status a tenant sees.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from app.db import Database
from app.pagination import Page, decode_cursor, encode_cursor


@dataclass(frozen=True)
class SourceRow:
    job_id: str
    tenant_id: str
    collection_id: str
    kind: str
    filename: str | None
    url: str | None
    source_key: str
    document_id: str
    content_type: str | None
    sha256: str | None
    size: int | None
    created_at: datetime


@dataclass(frozen=True)
class ListedRow:
    source: SourceRow
    status: str
    stage: str | None
    progress: int
    error: str | None
    result: Any
    finished_at: datetime | None


_SOURCE = (
    "s.job_id, s.tenant_id, s.collection_id, s.kind, s.filename, s.url, s.source_key, s.document_id, "
    "s.content_type, s.sha256, s.size, s.created_at"
)


def _source(r: Any) -> SourceRow:
    return SourceRow(**{k: r[k] for k in SourceRow.__dataclass_fields__})


class IngestionStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def insert_source(
        self,
        *,
        job_id: str,
        tenant_id: str,
        collection_id: str,
        kind: str,
        filename: str | None,
        url: str | None,
        source_key: str,
        document_id: str,
        content_type: str | None,
        sha256: str | None,
        content: bytes | None,
    ) -> None:
        await self.db.execute(
            "INSERT INTO ingestion_sources (job_id, tenant_id, collection_id, kind, filename, url, source_key, "
            "document_id, content_type, sha256, size, content) VALUES (:j, :t, :c, :k, :f, :u, :sk, :d, :ct, :h, "
            ":n, :b)",
            {
                "j": job_id,
                "t": tenant_id,
                "c": collection_id,
                "k": kind,
                "f": filename,
                "u": url,
                "sk": source_key,
                "d": document_id,
                "ct": content_type,
                "h": sha256,
                "n": None if content is None else len(content),
                "b": content,
            },
        )

    async def find_same_content(
        self, *, tenant_id: str, collection_id: str, sha256: str
    ) -> tuple[str, str, str] | None:
        """(job id, status, document id) of the newest job that has this content for this collection and did not
        fail."""
        row = await self.db.fetch_one(
            "SELECT s.job_id, j.status, s.document_id FROM ingestion_sources s JOIN jobs j ON j.id = s.job_id "
            "WHERE s.tenant_id = :t AND s.collection_id = :c AND s.sha256 = :h "
            "AND j.status NOT IN ('failed', 'cancelled') ORDER BY s.job_id DESC LIMIT 1",
            {"t": tenant_id, "c": collection_id, "h": sha256},
        )
        return None if row is None else (row["job_id"], row["status"], row["document_id"])

    async def get_source(self, *, tenant_id: str, job_id: str) -> tuple[SourceRow, bytes | None] | None:
        row = await self.db.fetch_one(
            f"SELECT {_SOURCE}, s.content FROM ingestion_sources s WHERE s.tenant_id = :t AND s.job_id = :j",
            {"t": tenant_id, "j": job_id},
        )
        return None if row is None else (_source(row), row["content"])

    async def update_fetched(
        self, *, tenant_id: str, job_id: str, content: bytes, sha256: str, content_type: str | None
    ) -> None:
        await self.db.execute(
            "UPDATE ingestion_sources SET content = :b, sha256 = :h, size = :n, content_type = :ct "
            "WHERE tenant_id = :t AND job_id = :j",
            {"b": content, "h": sha256, "n": len(content), "ct": content_type, "t": tenant_id, "j": job_id},
        )

    async def release_content(self, *, tenant_id: str, job_id: str) -> None:
        """Drop the stored bytes once the document is in its collection (the hash and size stay)."""
        await self.db.execute(
            "UPDATE ingestion_sources SET content = NULL WHERE tenant_id = :t AND job_id = :j",
            {"t": tenant_id, "j": job_id},
        )

    async def list_jobs(
        self, *, tenant_id: str, status: str | None, collection_id: str | None, limit: int, cursor: str | None
    ) -> Page[ListedRow]:
        before = decode_cursor(cursor)
        rows = await self.db.fetch_all(
            f"SELECT {_SOURCE}, j.status, j.stage, j.progress, j.error, j.result::text AS result, j.finished_at "
            "FROM ingestion_sources s JOIN jobs j ON j.id = s.job_id AND j.tenant_id = s.tenant_id "
            "WHERE s.tenant_id = :t AND (CAST(:status AS text) IS NULL OR j.status = :status) "
            "AND (CAST(:c AS text) IS NULL OR s.collection_id = :c) "
            "AND (CAST(:before AS text) IS NULL OR s.job_id < :before) ORDER BY s.job_id DESC LIMIT :limit",
            {"t": tenant_id, "status": status, "c": collection_id, "before": before, "limit": limit + 1},
        )
        items = [
            ListedRow(
                source=_source(r),
                status=r["status"],
                stage=r["stage"],
                progress=r["progress"],
                error=r["error"],
                result=None if r["result"] is None else orjson.loads(r["result"]),
                finished_at=r["finished_at"],
            )
            for r in rows[:limit]
        ]
        return Page(items, encode_cursor(items[-1].source.job_id) if len(rows) > limit else None)
