"""The worker: procrastinate hands out the jobs, `JobRunner` runs one, a reaper recovers those of dead workers.

This is the only module that imports procrastinate (and through it psycopg); it is imported only when a worker
starts, so `faas serve` without job kinds never pays for it. procrastinate owns fetching (LISTEN/NOTIFY plus a
short poll), concurrency, heartbeats and abort requests; our `jobs` row owns what the tenant sees.

A job's life here: procrastinate fetches it from a queue named after its kind and calls `JobRunner.run`, which
claims the `jobs` row under a fresh lease, runs the plugin's handler and writes the outcome under that lease.
- a handler exception: `failed` with a reason; re-raised, so procrastinate logs the trace and marks its row failed.
- a cancellation (procrastinate cancels the asyncio task on an abort request): `cancelled`.
- the worker stopping: running jobs get `shutdown_seconds` to finish, then are cancelled and handed back to the
  queue (`_Released`, which our retry strategy turns into an immediate retry) for another worker.
- the worker dying (kill -9, lost machine): its heartbeat stops; after `stalled_seconds` any worker's reaper puts
  the job back in the queue and notifies, and the next run skips the steps already recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import procrastinate
from procrastinate import job_context
from procrastinate import jobs as procrastinate_jobs
from procrastinate import retry as procrastinate_retry
from procrastinate import worker as procrastinate_worker

from app import context
from app.db import Database, plain_url
from app.errors import ServiceError
from app.http_client import without_credentials
from app.jobs.config import JobsConfig
from app.jobs.handler import Job, JobContext, JobHandler, JobLost
from app.jobs.store import JobRow, JobStore, dumps
from app.listen import Listener, current_task_cancelled
from app.plugins import Services

log = logging.getLogger("faas.jobs")
POLL_SECONDS = 2.0  # fallback for missed notifications, and how a job handed back at shutdown is found again
RESTART_SECONDS = (1.0, 30.0)  # a crashed worker loop restarts after this backoff (doubling, capped)


class _Worker(procrastinate_worker.Worker):
    """procrastinate's worker, with two changes.

    - It hears of new jobs through `app.listen.Listener` (asyncpg) rather than its own psycopg listener
      (`listen_notify=False`): that one sits in psycopg's `notifies()` under `asyncio.wait_for`, which on Python 3.11
      can swallow a cancellation; the listener then ran on after the worker stopped, and a process exiting hung for
      ever cancelling it.
    - No lost wake-up: procrastinate clears its "new job" flag after a fetch, so a notification that arrives while a
      fetch is in flight (whose snapshot predates the job) was lost and the job waited for the next poll; under a
      steady trickle of jobs that was ~1% of them, 2 s late. Fetch again when one arrived meanwhile.
    """

    _notifications = 0

    def notify(self, payload: str) -> None:
        """A notification on one of the queues' channels: a job inserted, or a job's abort requested."""
        try:
            notification = json.loads(payload)
            kind = notification["type"]
        except (ValueError, TypeError, KeyError):
            log.warning("ignored a malformed job notification", extra={"payload": payload[:200]})
            return
        self._notifications += 1
        if kind == "job_inserted":
            self._new_job_event.set()
        elif kind == "abort_job_requested":
            self._handle_abort_jobs_requested([notification["job_id"]])

    def wake(self) -> None:
        """Listening (again): notifications sent meanwhile were not heard, so look for jobs now."""
        self._notifications += 1
        self._new_job_event.set()

    async def _fetch_and_process_jobs(self) -> None:
        while True:
            seen = self._notifications
            await super()._fetch_and_process_jobs()  # type: ignore[no-untyped-call]
            if self._notifications == seen or self._stop_event.is_set():
                return


class _Released(Exception):
    """The worker stopped before the job finished: the job went back to the queue."""


class _RetryReleased(procrastinate_retry.BaseRetryStrategy):
    """Retry at once a job whose worker handed it back; never retry a failure (a handler's failure is final)."""

    def get_retry_decision(
        self, *, exception: BaseException, job: procrastinate_jobs.Job
    ) -> procrastinate_retry.RetryDecision | None:
        return procrastinate_retry.RetryDecision() if isinstance(exception, _Released) else None


def failure_reason(exc: BaseException) -> str:
    """What the tenant reads: a ServiceError's detail, else the exception type and the first line of its message."""
    if isinstance(exc, ServiceError):
        return exc.detail[:1000]
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return without_credentials(f"{type(exc).__name__}: {first}" if first else type(exc).__name__)[:1000]


class JobRunner:
    """Runs one job of a handled kind: claim, handler, outcome (see the module docstring)."""

    def __init__(
        self, *, db: Database, services: Services, handlers: dict[str, JobHandler], config: JobsConfig
    ) -> None:
        self.db = db
        self.store = JobStore(db)
        self.services = services
        self.handlers = handlers
        self.config = config

    async def run(self, pctx: job_context.JobContext, job_id: str) -> None:
        lease = secrets.token_hex(8)
        # The claim completes even if the job is cancelled meanwhile, so that a claimed job is always settled.
        claim = asyncio.ensure_future(self.store.claim_job(job_id=job_id, lease=lease))
        try:
            row = await asyncio.shield(claim)
        except asyncio.CancelledError:
            row = await claim
            if row is not None and not await self._interrupted(pctx, row, lease):
                raise _Released(job_id) from None
            raise
        if row is None:  # finished, cancelled or deleted meanwhile
            return
        context.bind(request_id=row.id, tenant_id=row.tenant_id, traceparent=context.new_trace().header)
        try:
            await self._run(pctx, row, lease)
        except asyncio.CancelledError:
            if not await self._interrupted(pctx, row, lease):
                raise _Released(job_id) from None
            raise

    async def _interrupted(self, pctx: job_context.JobContext, row: JobRow, lease: str) -> bool:
        """Settle a run cancelled by asyncio: True when the tenant cancelled it, False when it was handed back
        (the worker is stopping, or its loop closing), for another worker to run."""
        extra = {"job_id": row.id, "kind": row.kind, "attempt": row.attempts}
        if pctx.abort_reason() == job_context.AbortReason.USER_REQUEST:
            await asyncio.shield(
                self.store.finish_job(job_id=row.id, lease=lease, status="cancelled", error="cancelled on request")
            )
            log.info("job cancelled", extra=extra)
            return True
        await asyncio.shield(self.store.release_job(job_id=row.id, lease=lease))
        log.info("job handed back to the queue", extra=extra)
        return False

    async def _run(self, pctx: job_context.JobContext, row: JobRow, lease: str) -> None:
        extra = {"job_id": row.id, "kind": row.kind, "attempt": row.attempts}
        if row.cancel_requested:
            await self.store.finish_job(job_id=row.id, lease=lease, status="cancelled", error="cancelled on request")
            return
        if row.attempts > self.config.max_attempts:
            reason = f"the job was started {row.attempts - 1} times and its worker stopped each time; giving up"
            await self.store.finish_job(job_id=row.id, lease=lease, status="failed", error=reason)
            log.error("job given up", extra=extra)
            return
        handler = self.handlers.get(row.kind)
        if handler is None:  # queues are named after kinds, so a worker only fetches kinds it has
            reason = f"no worker handles job kind {row.kind!r}"
            await self.store.finish_job(job_id=row.id, lease=lease, status="failed", error=reason)
            return
        ctx = JobContext(
            job=Job(id=row.id, tenant_id=row.tenant_id, kind=row.kind, payload=row.payload, attempt=row.attempts),
            services=self.services,
            db=self.db,
            _store=self.store,
            _lease=lease,
            _should_stop=pctx.should_abort,
        )
        started = time.monotonic()
        log.info("job started", extra=extra)
        try:
            try:
                value = await handler(ctx)
            finally:
                ctx.end()
            encoded = dumps(value)
            finished = await self.store.finish_job(job_id=row.id, lease=lease, status="succeeded", result=encoded)
        except JobLost:
            log.warning("job taken over by another worker; this run stops", extra=extra)
            return
        except Exception as exc:  # the handler's, or a result PostgreSQL refuses to store
            reason = failure_reason(exc)
            await self.store.finish_job(job_id=row.id, lease=lease, status="failed", error=reason)
            log.info("job failed", extra={**extra, "reason": reason})
            raise
        if finished:
            log.info("job succeeded", extra={**extra, "seconds": round(time.monotonic() - started, 3)})
        else:
            log.warning("job finished after another worker took it over; result dropped", extra=extra)


class JobWorker:
    """One procrastinate worker over the queues of `handlers`, plus the reaper, restarted if it crashes."""

    def __init__(
        self,
        *,
        database_url: str,
        db: Database,
        services: Services,
        handlers: dict[str, JobHandler],
        config: JobsConfig,
    ) -> None:
        self.database_url = database_url
        self.config = config
        self.queues = sorted(handlers)
        self.store = JobStore(db)
        self.runner = JobRunner(db=db, services=services, handlers=handlers, config=config)
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def _app(self) -> procrastinate.App:
        # procrastinate's own writes (fetch, finish, heartbeat) commit without waiting for the WAL flush: that halves
        # the flushes per job. A database crash may undo the last few of them, which the design absorbs: a fetch
        # undone is fetched again, a finish undone is requeued by the reaper and then found finished in `jobs`,
        # whose writes (on the app's pool) stay synchronous and are the truth a tenant reads.
        connector = procrastinate.PsycopgConnector(
            conninfo=plain_url(self.database_url),
            min_size=1,
            max_size=self.config.concurrency + 2,
            kwargs={"application_name": "faas-jobs-worker", "options": "-c synchronous_commit=off"},
        )
        app = procrastinate.App(connector=connector)
        for kind in self.queues:
            app.task(name=kind, queue=kind, pass_context=True, retry=_RetryReleased())(self.runner.run)
        return app

    async def run(self) -> None:
        """Work until cancelled; a crash (database gone, say) is logged and the worker restarts after a backoff."""
        delay = RESTART_SECONDS[0]
        while True:
            if current_task_cancelled():  # a stop that a library swallowed is still a stop
                raise asyncio.CancelledError
            started = time.monotonic()
            try:
                await self._run_once()
                log.error("job worker stopped on its own; restarting", extra={"queues": self.queues})
            except Exception:
                log.exception("job worker crashed; restarting", extra={"queues": self.queues})
            if time.monotonic() - started > RESTART_SECONDS[1]:
                delay = RESTART_SECONDS[0]
            await asyncio.sleep(delay)
            delay = min(delay * 2, RESTART_SECONDS[1])

    async def _run_once(self) -> None:
        app = self._app()
        async with app.open_async():
            worker = _Worker(
                app,
                queues=self.queues,
                name=self.name,
                concurrency=self.config.concurrency,
                install_signal_handlers=False,
                listen_notify=False,
                fetch_job_polling_interval=POLL_SECONDS,
                abort_job_polling_interval=POLL_SECONDS,
                shutdown_graceful_timeout=self.config.shutdown_seconds,
                update_heartbeat_interval=self.config.heartbeat_seconds,
                stalled_worker_timeout=self.config.stalled_seconds,
            )
            listener = Listener(
                self.database_url,
                [f"procrastinate_queue_v1#{queue}" for queue in self.queues],
                on_message=worker.notify,
                on_reset=worker.wake,
            )
            listener.start()
            reaper = asyncio.create_task(self._reap(), name="jobs reaper")
            try:
                # Cancelling this stops the worker gracefully: running jobs get shutdown_graceful_timeout, then
                # are cancelled (and handed back by JobRunner). The same as app.run_worker_async, with _Worker.
                await worker.run()  # type: ignore[no-untyped-call]
            finally:
                reaper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reaper
                await listener.stop()

    async def _reap(self) -> None:
        while not current_task_cancelled():
            await asyncio.sleep(self.config.heartbeat_seconds)
            try:
                stalled = await self.store.requeue_stalled(
                    queues=self.queues, stalled_seconds=self.config.stalled_seconds
                )
            except Exception:  # the next round tries again; the worker itself keeps running
                log.exception("could not check for stalled jobs")
                continue
            for job in stalled:
                log.warning(
                    "job of a dead worker %s",
                    "cancelled" if job.cancelled else "put back in the queue",
                    extra={"procrastinate_id": job.procrastinate_id, "kind": job.queue},
                )


@asynccontextmanager
async def running_worker(
    *, database_url: str, db: Database, services: Services, handlers: dict[str, JobHandler], config: JobsConfig
) -> AsyncIterator[asyncio.Task[Any]]:
    """Run a worker in the background for the duration of the block; leaving it stops the worker gracefully."""
    # procrastinate logs every job start and end at INFO; JobRunner logs them with the tenant and kind instead.
    logging.getLogger("procrastinate").setLevel(max(logging.WARNING, logging.getLogger().getEffectiveLevel()))
    worker = JobWorker(database_url=database_url, db=db, services=services, handlers=handlers, config=config)
    task = asyncio.create_task(worker.run(), name="jobs worker")
    log.info("job worker started", extra={"queues": worker.queues, "concurrency": config.concurrency})
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        log.info("job worker stopped", extra={"queues": worker.queues})
