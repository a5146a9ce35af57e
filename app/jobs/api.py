"""HTTP routes of the job queue (`/api/v1/jobs`): read, list and cancel the calling tenant's jobs.

Jobs are created by the plugins (an ingestion upload, a training run...), never directly through this API.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from app.auth import tenant_id
from app.jobs.queue import JobQueue
from app.jobs.schemas import JobList, JobListQuery, JobPath, JobPublic
from app.routing import api_route, json_response, read_path, read_query


def _queue(request: Request) -> JobQueue:
    queue: JobQueue = request.state.jobs
    return queue


def _job_id(request: Request) -> str:
    return read_path(request, JobPath).job_id


async def get_job(request: Request) -> Response:
    """A job of the calling tenant: status, stage, progress, and its result or the reason it failed."""
    return json_response(await _queue(request).get_job(tenant_id=tenant_id(request), job_id=_job_id(request)))


async def list_jobs(request: Request) -> Response:
    """The calling tenant's jobs, newest first."""
    q = read_query(request, JobListQuery)
    page = await _queue(request).list_jobs(
        tenant_id=tenant_id(request), kind=q.kind, status=q.status, limit=q.limit, cursor=q.cursor
    )
    return json_response(JobList(data=page.items, next_cursor=page.next_cursor))


async def cancel_job(request: Request) -> Response:
    """Cancel a job. 200: it was queued and is now cancelled. 202: it is running and was asked to stop; it becomes
    cancelled when its handler stops (poll the job). 409: it has already finished."""
    job = await _queue(request).cancel_job(tenant_id=tenant_id(request), job_id=_job_id(request))
    return json_response(job, status=200 if job.status == "cancelled" else 202)


def routes() -> list[BaseRoute]:
    common = {"tags": ("jobs",)}
    return [
        api_route("GET", "/", list_jobs, "List jobs", query=JobListQuery, response=JobList, **common),
        api_route("GET", "/{job_id}", get_job, "Get a job", path=JobPath, response=JobPublic, errors=(404,), **common),
        api_route(
            "POST",
            "/{job_id}/cancel",
            cancel_job,
            "Cancel a job",
            path=JobPath,
            response=JobPublic,
            also=(202,),
            errors=(404, 409),
            **common,
        ),
    ]
