"""HTTP endpoints of the ingestion plugin (mounted under /api/v1/ingestion): they parse, call the service, and
render. Uploads arrive as multipart/form-data, URLs as JSON, on the same route."""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from app.auth import tenant_id
from app.errors import InvalidInput
from app.plugin_kit import describe_route
from app.plugins import service
from app.routing import api_route, json_response, read_body, read_query
from app.schemas import Schema
from plugins.ingestion.interface import INGESTION, IngestionService
from plugins.ingestion.schemas import (
    UPLOAD_FORM,
    CollectionRef,
    IngestionJobList,
    IngestionJobQuery,
    JobsAccepted,
    Upload,
    UrlIngestIn,
)

MAX_FORM_FILES = 1000  # the parser's own bound; the service applies FAAS_INGESTION_MAX_FILES
_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")


class _UploadFields(Schema):
    collection: CollectionRef


def _service(request: Request) -> IngestionService:
    return service(request, INGESTION)


def safe_filename(name: str | None) -> str:
    """A file name as a label only (never a path): its last path segment, without control characters, at most 255
    characters; `upload` when nothing is left."""
    base = re.split(r"[/\\]", name or "")[-1]
    base = _UNSAFE.sub("", base).strip().lstrip(".") or "upload"
    return base[:255]


async def _read_upload(request: Request) -> tuple[str, list[Upload]]:
    async with request.form(max_files=MAX_FORM_FILES, max_fields=20) as form:
        raw = form.getlist("collection")
        if len(raw) != 1 or not isinstance(raw[0], str):
            raise InvalidInput("send exactly one `collection` field (a collection's id or name)")
        try:
            fields = _UploadFields(collection=raw[0])
        except ValidationError as exc:
            raise InvalidInput(f"collection: {exc.errors(include_url=False)[0]['msg']}") from None
        files: list[Upload] = []
        for item in form.getlist("file"):
            if not isinstance(item, UploadFile):
                raise InvalidInput("each `file` field must be a file part (with a filename)")
            files.append(Upload(safe_filename(item.filename), item.content_type, await item.read()))
    return fields.collection, files


async def create_jobs(request: Request) -> Response:
    """Ingest documents: multipart/form-data with `file` (repeatable) and `collection`, or JSON `{"url",
    "collection"}`. 202 with one job per document; poll `GET /api/v1/jobs/{id}` or list this plugin's jobs."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    svc, tenant = _service(request), tenant_id(request)
    if ctype == "multipart/form-data":
        collection, files = await _read_upload(request)
        out = await svc.ingest_files(tenant_id=tenant, collection=collection, files=files)
    else:
        body = await read_body(request, UrlIngestIn)
        out = await svc.ingest_url(tenant_id=tenant, request=body)
    return json_response(out, status=202)


async def list_jobs(request: Request) -> Response:
    """This plugin's jobs, newest first: their status, stage, progress, source and result."""
    q = read_query(request, IngestionJobQuery)
    page = await _service(request).list_jobs(
        tenant_id=tenant_id(request), status=q.status, collection=q.collection, limit=q.limit, cursor=q.cursor
    )
    return json_response(page)


def routes() -> list[BaseRoute]:
    tags: dict[str, Any] = {"tags": ("ingestion",)}
    return [
        describe_route(INGESTION),
        api_route(
            "POST",
            "/jobs",
            create_jobs,
            "Ingest uploaded files or a URL into a rag collection (one job per document)",
            body=UrlIngestIn,
            forms={"multipart/form-data": UPLOAD_FORM},
            response=JobsAccepted,
            status=202,
            serves=("ingest_files", "ingest_url"),
            errors=(404, 413, 415, 422, 503),
            **tags,
        ),
        api_route(
            "GET",
            "/jobs",
            list_jobs,
            "List ingestion jobs (filter by status and collection)",
            query=IngestionJobQuery,
            response=IngestionJobList,
            errors=(404, 422),
            **tags,
        ),
    ]
