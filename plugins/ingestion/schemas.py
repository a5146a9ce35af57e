"""Request and response types of the ingestion plugin: the single source for validation and the OpenAPI document.

An upload is multipart/form-data (`file`, repeatable, and `collection`), described by `UPLOAD_FORM`; a URL is the
JSON body `UrlIngestIn`. Both answer `JobsAccepted`, one job per document.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from pydantic import Field

from app.jobs import JobStatus
from app.pagination import PageQuery
from app.schemas import Schema

NO_NUL = r"^[^\x00]+$"
CollectionRef = Annotated[
    str,
    Field(min_length=1, max_length=200, pattern=NO_NUL, description="A RAG collection's id or its name"),
]
Url = Annotated[
    str,
    Field(min_length=8, max_length=2048, pattern=r"^[Hh][Tt][Tt][Pp][Ss]?://[^\x00-\x20]+$", description="http(s)"),
]

# The multipart form of an upload, as OpenAPI 3.1 describes one.
UPLOAD_FORM: dict[str, Any] = {
    "type": "object",
    "required": ["file", "collection"],
    "properties": {
        "file": {
            "type": "array",
            "minItems": 1,
            "items": {"type": "string", "contentMediaType": "application/octet-stream", "minLength": 1},
            "description": "One part per document (repeat the field); its file name names the document",
        },
        "collection": {"type": "string", "minLength": 1, "maxLength": 200, "description": "Collection id or name"},
    },
}


@dataclass(frozen=True)
class Upload:
    """One uploaded file: its (sanitised) name, declared media type and bytes."""

    filename: str
    content_type: str | None
    data: bytes


class UrlIngestIn(Schema):
    url: Url
    collection: CollectionRef


class JobAccepted(Schema):
    id: str = Field(description="The job (`GET /api/v1/jobs/{id}`)")
    status: JobStatus
    filename: str | None = None
    url: str | None = None
    collection_id: str
    duplicate: bool = Field(
        default=False, description="True: this content was already sent to this collection; the job is that one"
    )


class JobsAccepted(Schema):
    jobs: list[JobAccepted]


class IngestionJobPublic(Schema):
    id: str
    status: JobStatus
    stage: str | None
    progress: int
    error: str | None
    result: Any = None
    collection_id: str
    filename: str | None
    url: str | None
    document_id: str
    sha256: str | None
    size: int | None
    created_at: datetime
    finished_at: datetime | None


class IngestionJobList(Schema):
    data: list[IngestionJobPublic]
    next_cursor: str | None


class IngestionJobQuery(PageQuery):
    """`?status=&collection=&limit=&cursor=`: newest first."""

    status: JobStatus | None = None
    collection: CollectionRef | None = None
