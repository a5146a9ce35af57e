"""The queue API plugins call (through `PluginContext.jobs`) and the HTTP routes use: enqueue, read, list, cancel.

Every method takes the tenant explicitly and filters on it: another tenant's job is `NotFound`, like a missing one.
Enqueueing is one INSERT (the job row and its queue entry together); inside the caller's `db.transaction()` it
commits or rolls back with the caller's own writes, so "document stored" and "job queued" cannot come apart.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterable, Mapping
from typing import Any

from app.db import Database
from app.errors import Conflict, NotFound
from app.jobs.schemas import KIND_MAX, KIND_PATTERN, JobPublic, JobStatus
from app.jobs.store import JobRow, JobStore, dumps
from app.pagination import Page, decode_cursor, encode_cursor

_KIND = re.compile(KIND_PATTERN)


def new_job_id() -> str:
    """`job_` + 12 hex digits of milliseconds since the epoch + 8 random: ids sort by creation time."""
    return f"job_{int(time.time() * 1000):012x}{secrets.token_hex(4)}"


def valid_kind(kind: str) -> bool:
    return len(kind) <= KIND_MAX and bool(_KIND.match(kind))


def public(row: JobRow) -> JobPublic:
    return JobPublic(
        id=row.id,
        kind=row.kind,
        status=row.status,  # type: ignore[arg-type]  # the column's CHECK constraint holds the same five values
        stage=row.stage,
        progress=row.progress,
        result=row.result,
        error=row.error,
        attempts=row.attempts,
        cancel_requested=row.cancel_requested,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        updated_at=row.updated_at,
    )


class JobQueue:
    """Durable jobs on PostgreSQL. `kinds` are the job kinds this deployment knows (those of its plugins)."""

    def __init__(self, db: Database, *, kinds: Iterable[str] = ()) -> None:
        self.db = db
        self.store = JobStore(db)
        self.kinds = frozenset(kinds)

    async def enqueue(self, *, tenant_id: str, kind: str, payload: Mapping[str, Any] | None = None) -> JobPublic:
        """Queue a job of `kind` for `tenant_id`; a worker that handles `kind` starts it. Once this returns, the job
        is stored (a crash cannot lose it). ValueError for a kind no plugin here declares, or a payload that is not
        JSON; NotFound when the tenant does not exist."""
        if kind not in self.kinds:
            known = ", ".join(sorted(self.kinds)) or "none"
            raise ValueError(f"no plugin here declares the job kind {kind!r} (known: {known})")
        try:
            encoded = dumps(dict(payload or {}))
        except TypeError as exc:
            raise ValueError(f"the payload of a {kind} job is not JSON: {exc}") from None
        row = await self.store.insert_job(job_id=new_job_id(), tenant_id=tenant_id, kind=kind, payload=encoded)
        if row is None:
            raise NotFound(f"tenant {tenant_id!r} does not exist")
        return public(row)

    async def get_job(self, *, tenant_id: str, job_id: str) -> JobPublic:
        row = await self.store.get_job(tenant_id=tenant_id, job_id=job_id)
        if row is None:
            raise NotFound(f"job {job_id!r} does not exist")
        return public(row)

    async def list_jobs(
        self,
        *,
        tenant_id: str,
        kind: str | None = None,
        status: JobStatus | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> Page[JobPublic]:
        """The tenant's jobs, newest first, optionally of one kind and status."""
        rows = await self.store.list_jobs(
            tenant_id=tenant_id, kind=kind, status=status, before=decode_cursor(cursor), limit=limit + 1
        )
        items = [public(r) for r in rows[:limit]]
        return Page(items, encode_cursor(items[-1].id) if len(rows) > limit else None)

    async def cancel_job(self, *, tenant_id: str, job_id: str) -> JobPublic:
        """Cancel a queued job (it is `cancelled` at once) or ask a running one to stop (`cancel_requested`; it
        becomes `cancelled` when its handler stops). Conflict when the job has already finished."""
        found = await self.store.cancel_job(tenant_id=tenant_id, job_id=job_id)
        if found is None:
            raise NotFound(f"job {job_id!r} does not exist")
        row, changed = found
        if not changed:
            raise Conflict(
                f"job {job_id} has already {row.status}: only a queued or running job can be cancelled",
                extra={"job_status": row.status},  # `status` is the HTTP status of the problem,
            )
        return public(row)
