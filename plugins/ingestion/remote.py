"""`IngestionService` over HTTP: the same routes and schemas, served by the deployment at FAAS_INGESTION_URL.
Uploads travel as the same multipart/form-data a client sends."""

from __future__ import annotations

import secrets

from app.jobs import JobStatus
from app.remote import RemoteService, remote_factory
from plugins.ingestion.schemas import IngestionJobList, JobsAccepted, Upload, UrlIngestIn

CLIENT_DEFAULTS = {"timeout": 120.0, "deadline": 300.0}


def _quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "").replace("\n", "")


def multipart(collection: str, files: list[Upload]) -> tuple[bytes, str]:
    """The form body (always multipart, even without files) and its content type."""
    boundary = secrets.token_hex(16)
    out = bytearray()
    parts: list[tuple[str, str | None, bytes]] = [('name="collection"', None, collection.encode())]
    parts += [
        (f'name="file"; filename="{_quoted(f.filename)}"', f.content_type or "application/octet-stream", f.data)
        for f in files
    ]
    for disposition, ctype, data in parts:
        out += f"--{boundary}\r\nContent-Disposition: form-data; {disposition}\r\n".encode()
        if ctype is not None:
            out += f"Content-Type: {_quoted(ctype)}\r\n".encode()
        out += b"\r\n" + data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"


class RemoteIngestionService(RemoteService):
    async def ingest_files(self, *, tenant_id: str, collection: str, files: list[Upload]) -> JobsAccepted:
        body, ctype = multipart(collection, files)
        return await self._client.call(
            "POST", "/jobs", JobsAccepted, tenant_id=tenant_id, body=body, headers={"Content-Type": ctype}
        )

    async def ingest_url(self, *, tenant_id: str, request: UrlIngestIn) -> JobsAccepted:
        return await self._client.call("POST", "/jobs", JobsAccepted, tenant_id=tenant_id, body=request)

    async def list_jobs(
        self,
        *,
        tenant_id: str,
        status: JobStatus | None = None,
        collection: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> IngestionJobList:
        params = {"status": status, "collection": collection, "limit": limit, "cursor": cursor}
        return await self._client.call(
            "GET",
            "/jobs",
            IngestionJobList,
            tenant_id=tenant_id,
            params={k: v for k, v in params.items() if v is not None},
        )


open_remote = remote_factory(RemoteIngestionService, defaults=CLIENT_DEFAULTS)
