"""The core's durable job queue, on procrastinate and PostgreSQL.

Plugins declare job kinds (`Plugin.jobs`: `<plugin>.<name>` -> handler), enqueue through `PluginContext.jobs`
(a `JobQueue`), and write handlers against `JobContext` (see `app.jobs.handler` for the contract). Tenants read and
cancel their jobs at `/api/v1/jobs`. A worker runs inside `faas serve` (FAAS_JOBS_WORKER) and as `faas worker`.

Modules: `schemas` (what a tenant sees), `store` (all SQL), `queue` (the API plugins call), `handler` (the handler
contract), `registry` (kinds from plugins), `worker` (procrastinate: the only module importing it), `api` (routes),
`config` (FAAS_JOBS_* settings).
"""

from __future__ import annotations

from app.jobs.handler import Job, JobContext, JobHandler, JobLost
from app.jobs.queue import JobQueue
from app.jobs.schemas import JobPublic, JobStatus

__all__ = ["Job", "JobContext", "JobHandler", "JobLost", "JobPublic", "JobQueue", "JobStatus"]
