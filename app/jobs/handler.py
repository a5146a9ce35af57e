"""The handler contract: what a plugin's job handler receives (`JobContext`) and must obey.

A plugin maps each of its job kinds (`<plugin>.<name>`) to a handler, `async def handler(ctx) -> JSON`:

- It runs on the worker's event loop, beside HTTP requests in `faas serve`: never block it. CPU-bound or blocking
  work goes to a thread (`asyncio.to_thread`) or a process, and checks `ctx.cancelled` between pieces.
- Its return value must be JSON-serialisable; it becomes the job's `result` and the job `succeeded`.
- An exception makes the job `failed`. The tenant sees a reason without a stack trace: the `detail` of a
  `ServiceError`, otherwise the exception's type and first line; the log has the trace. Failures are not retried.
- A job runs at least once: when its worker dies it starts again on another worker. Wrap every side effect in
  `await ctx.step(name, fn)`: a step that finished is not run again, its recorded result is returned instead.
  With `transactional=True`, what `fn` writes through `ctx.db` (or a store on that same Database, from the same
  task) commits in one transaction with the step's record, so even a crash between the two duplicates nothing.
- Cancellation: a running handler is cancelled with asyncio (`CancelledError` at its next await); code that cannot
  be interrupted that way (a thread, a shielded section) polls `ctx.cancelled` or calls `ctx.raise_if_cancelled()`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import orjson

from app.db import Database
from app.jobs.store import JobStore, dumps
from app.plugins import Services

JobHandler: TypeAlias = Callable[["JobContext"], Awaitable[Any]]


class JobLost(Exception):
    """This worker no longer holds the job: it was declared dead and the job handed to another worker.
    Raised by `step` and `progress` so that the stale run stops instead of competing with the new one."""


@dataclass(frozen=True)
class Job:
    id: str
    tenant_id: str
    kind: str
    payload: dict[str, Any]
    attempt: int  # 1 on the first run, more after a worker died


class _StepTaken(Exception):
    """Another run recorded this step first: roll back this run's transactional writes."""


@dataclass
class JobContext:
    job: Job
    services: Services
    db: Database
    _store: JobStore = field(repr=False)
    _lease: str = field(repr=False)
    _should_stop: Callable[[], bool] = field(repr=False)
    _last_progress: tuple[str | None, int] | None = field(default=None, repr=False)
    _ended: bool = field(default=False, repr=False)

    @property
    def cancelled(self) -> bool:
        """Cancellation (or a worker shutdown past its grace period) asks this job to stop now. Once true it stays
        true: a thread still polling it after the handler's task was cancelled (and the job settled) must stop
        too, though the worker no longer tracks the job."""
        if not self._ended and self._should_stop():
            self._ended = True
        return self._ended

    def raise_if_cancelled(self) -> None:
        if self.cancelled:
            raise asyncio.CancelledError

    def end(self) -> None:
        """The handler has returned or raised: anything it left running (a thread) sees `cancelled` from now."""
        self._ended = True

    async def progress(self, stage: str | None, percent: float) -> None:
        """Report the current stage and percentage (clamped to 0..100): one small UPDATE, skipped if unchanged."""
        value = (None if stage is None else stage[:200], max(0, min(100, round(percent))))
        if value == self._last_progress:
            return
        if not await self._store.update_progress(
            job_id=self.job.id, lease=self._lease, stage=value[0], progress=value[1]
        ):
            raise JobLost(f"job {self.job.id} was handed to another worker")
        self._last_progress = value

    async def step(self, name: str, fn: Callable[[], Awaitable[Any]], *, transactional: bool = False) -> Any:
        """Run `fn` once per job and return its JSON result; on a later run, return the recorded result instead.

        The value returned is always the JSON round trip of `fn`'s result (a tuple comes back as a list), so a
        handler behaves the same on the first run and on a retry."""
        if not name or len(name) > 200:
            raise ValueError("a step name is 1 to 200 characters")
        found, recorded = await self._store.get_step(job_id=self.job.id, name=name)
        if found:
            return recorded
        if not transactional:
            encoded = dumps(await fn())
            owned, inserted = await self._store.insert_step(
                job_id=self.job.id,
                tenant_id=self.job.tenant_id,
                lease=self._lease,
                name=name,
                result=encoded,
                require_lease=False,
            )
            if not owned:
                raise JobLost(f"job {self.job.id} was handed to another worker")
            return orjson.loads(encoded) if inserted else (await self._store.get_step(job_id=self.job.id, name=name))[1]
        try:
            async with self.db.transaction():
                encoded = dumps(await fn())
                owned, inserted = await self._store.insert_step(
                    job_id=self.job.id,
                    tenant_id=self.job.tenant_id,
                    lease=self._lease,
                    name=name,
                    result=encoded,
                    require_lease=True,
                )
                if not owned:
                    raise JobLost(f"job {self.job.id} was handed to another worker")
                if not inserted:
                    raise _StepTaken
        except _StepTaken:
            return (await self._store.get_step(job_id=self.job.id, name=name))[1]
        return orjson.loads(encoded)
