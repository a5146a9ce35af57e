"""What a tenant sees of a job: the single source for validation and for the OpenAPI document."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from app.pagination import PageQuery
from app.schemas import Schema

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]

JOB_ID_PATTERN = r"^job_[0-9a-f]{20}$"
# `<plugin>.<name>`. The kind is also the queue's name, and procrastinate's notification channel for a queue is
# `procrastinate_queue_v1#<queue>`, which must fit PostgreSQL's 63-byte identifiers: hence at most 40 characters.
KIND_PATTERN = r"^[a-z][a-z0-9_]{0,30}\.[a-z0-9][a-z0-9_.-]{0,38}$"
KIND_MAX = 40


class JobPublic(Schema):
    id: str = Field(description="Public id, `job_` and 20 hex digits (they start with the creation time)")
    kind: str = Field(description="What the job does, `<plugin>.<name>`")
    status: JobStatus
    stage: str | None = Field(description="The handler's last reported stage")
    progress: int = Field(ge=0, le=100, description="Percent done, as last reported (100 once succeeded)")
    result: Any = Field(default=None, description="The handler's JSON result, once succeeded")
    error: str | None = Field(default=None, description="Why the job failed or was cancelled")
    attempts: int = Field(
        description="How many times a worker started it, not counting clean hand-backs at a worker's shutdown "
        "(more than 1 after a worker died)"
    )
    cancel_requested: bool = Field(description="Cancellation was asked for; a running job stops at its next await")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime


class JobList(Schema):
    data: list[JobPublic]
    next_cursor: str | None


class JobListQuery(PageQuery):
    """`?kind=&status=&limit=&cursor=`: newest first."""

    kind: str | None = Field(
        default=None, max_length=KIND_MAX, pattern=KIND_PATTERN, description="Only jobs of this kind"
    )
    status: JobStatus | None = Field(default=None, description="Only jobs in this status")


class JobPath(Schema):
    job_id: str = Field(pattern=JOB_ID_PATTERN)
