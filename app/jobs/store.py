"""All SQL of the job queue: the `jobs` and `job_steps` tables, and the few calls into procrastinate's SQL API.

Invariants:
- A `jobs` row and its `procrastinate_jobs` row are created by one statement: neither exists without the other.
- Every tenant-facing read and write filters on `tenant_id`; a job of another tenant is indistinguishable from none.
- A worker's writes to a running job name its `lease` (set when it started the job). Once the job was handed to
  another worker (its first worker declared dead) those writes change nothing, and the caller learns so.
- Transactions that lock both a `procrastinate_jobs` row and a `jobs` row lock them in that order (cancel, and the
  requeue of stalled jobs), so the two can never deadlock each other.

Durability: what a tenant may have seen, or what must survive a database crash, commits synchronously: a job once
enqueued, a cancellation asked for, a finished step (its effects happened), what a transactional step wrote, and a
job's outcome (a tenant who read `succeeded` must never find it running again). The in-between status writes of a
run (claim, progress) commit without waiting for the WAL flush: a sync commit costs ~1.2 ms of fdatasync on an idle
machine and several on a busy one, against ~0.1 ms. A crash may undo the last fraction of a second of them, which the
design absorbs: the job is found queued or running again, runs again, and its recorded steps are not repeated; a job
whose outcome is recorded is never claimed again, whatever procrastinate's own (asynchronously committed) row says.

Queries go straight to asyncpg with positional parameters (`$1`): they are on every job's path, and asyncpg caches
their prepared statements per connection. jsonb travels as text, encoded and decoded here with orjson.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import asyncpg
import orjson

from app.db import Database

_COLUMNS = (
    "id, tenant_id, kind, status, stage, progress, payload, result, error, attempts, cancel_requested, lease, "
    "procrastinate_id, created_at, started_at, finished_at, updated_at"
)


@dataclass(frozen=True)
class JobRow:
    id: str
    tenant_id: str
    kind: str
    status: str
    stage: str | None
    progress: int
    payload: dict[str, Any]
    result: Any
    error: str | None
    attempts: int
    cancel_requested: bool
    lease: str | None
    procrastinate_id: int | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime


@dataclass(frozen=True)
class StalledJob:
    procrastinate_id: int
    queue: str
    cancelled: bool  # cancellation was asked for while its worker was dying: it ends cancelled, not requeued


def _row(r: Any) -> JobRow:
    return JobRow(
        id=r["id"],
        tenant_id=r["tenant_id"],
        kind=r["kind"],
        status=r["status"],
        stage=r["stage"],
        progress=r["progress"],
        payload=orjson.loads(r["payload"]),
        result=None if r["result"] is None else orjson.loads(r["result"]),
        error=r["error"],
        attempts=r["attempts"],
        cancel_requested=r["cancel_requested"],
        lease=r["lease"],
        procrastinate_id=r["procrastinate_id"],
        created_at=r["created_at"],
        started_at=r["started_at"],
        finished_at=r["finished_at"],
        updated_at=r["updated_at"],
    )


def dumps(value: Any) -> str:
    """JSON text of `value` for a jsonb column (TypeError when it is not JSON-serialisable)."""
    return orjson.dumps(value).decode()


class JobStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def _fetchrow(self, sql: str, *args: Any) -> Any:
        async with self.db.connection() as conn:
            return await conn.raw_connection.fetchrow(sql, *args)

    async def _fetchrow_lazy(self, sql: str, *args: Any) -> Any:
        """One row, committed without waiting for the WAL flush (see "Durability" above)."""
        async with self.db.connection() as conn:
            raw = conn.raw_connection
            if raw.is_in_transaction():  # the caller's transaction commits it, as the caller chose
                return await raw.fetchrow(sql, *args)
            async with raw.transaction():
                await raw.execute("SET LOCAL synchronous_commit = off")
                return await raw.fetchrow(sql, *args)

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        async with self.db.connection() as conn:
            rows: list[Any] = await conn.raw_connection.fetch(sql, *args)
            return rows

    # --- what tenants (and the plugins acting for them) do ------------------------------------------------------

    async def insert_job(self, *, job_id: str, tenant_id: str, kind: str, payload: str) -> JobRow | None:
        """Create the job and queue it (queue and procrastinate task are both named after the kind). None when the
        tenant does not exist. Inside a caller's transaction, the job commits (and a worker hears of it) with it."""
        try:
            row = await self._fetchrow(
                f"""
                WITH queued AS (
                    SELECT unnest(procrastinate_defer_jobs_v1(ARRAY[ROW(
                        $3::varchar, $3::varchar, 0, NULL, NULL, jsonb_build_object('job_id', $1::text), NULL
                    )::procrastinate_job_to_defer_v1])) AS pid
                )
                INSERT INTO jobs (id, tenant_id, kind, payload, procrastinate_id)
                SELECT $1, $2, $3, $4::jsonb, queued.pid FROM queued
                RETURNING {_COLUMNS}
                """,
                job_id,
                tenant_id,
                kind,
                payload,
            )
        except asyncpg.ForeignKeyViolationError:
            return None
        return _row(row)

    async def get_job(self, *, tenant_id: str, job_id: str) -> JobRow | None:
        row = await self._fetchrow(f"SELECT {_COLUMNS} FROM jobs WHERE id = $1 AND tenant_id = $2", job_id, tenant_id)
        return None if row is None else _row(row)

    async def list_jobs(
        self, *, tenant_id: str, kind: str | None, status: str | None, before: str | None, limit: int
    ) -> list[JobRow]:
        """Newest first; `before` is the id of the last job of the previous page."""
        rows = await self._fetch(
            f"""
            SELECT {_COLUMNS} FROM jobs
            WHERE tenant_id = $1 AND ($2::text IS NULL OR kind = $2) AND ($3::text IS NULL OR status = $3)
              AND ($4::text IS NULL OR id < $4)
            ORDER BY id DESC LIMIT $5
            """,
            tenant_id,
            kind,
            status,
            before,
            limit,
        )
        return [_row(r) for r in rows]

    async def cancel_job(self, *, tenant_id: str, job_id: str) -> tuple[JobRow, bool] | None:
        """Cancel a queued job at once; ask a running one to stop (its worker hears through procrastinate's abort
        notification). Returns the job and whether this call changed it (False: it had finished already); None
        when there is no such job for this tenant."""
        async with self.db.transaction():
            pid = await self._fetchrow(
                "SELECT procrastinate_id FROM jobs WHERE id = $1 AND tenant_id = $2", job_id, tenant_id
            )
            if pid is None:
                return None
            queue_row = await self._fetchrow(
                "SELECT status FROM procrastinate_jobs WHERE id = $1 FOR UPDATE", pid["procrastinate_id"]
            )
            row = await self._fetchrow(
                f"SELECT {_COLUMNS} FROM jobs WHERE id = $1 AND tenant_id = $2 FOR UPDATE", job_id, tenant_id
            )
            if row is None:
                return None
            if row["status"] in ("succeeded", "failed", "cancelled"):
                return _row(row), False
            if queue_row is not None:
                # todo -> cancelled; doing -> abort requested (and a notification to its worker).
                await self._fetchrow("SELECT procrastinate_cancel_job_v1($1, true, false)", row["procrastinate_id"])
            if queue_row is not None and queue_row["status"] == "doing":
                updated = await self._fetchrow(
                    f"UPDATE jobs SET cancel_requested = true, updated_at = now() WHERE id = $1 RETURNING {_COLUMNS}",
                    job_id,
                )
            else:
                updated = await self._fetchrow(
                    f"""
                    UPDATE jobs SET status = 'cancelled', cancel_requested = true, error = 'cancelled on request',
                                    lease = NULL, finished_at = now(), updated_at = now()
                    WHERE id = $1 RETURNING {_COLUMNS}
                    """,
                    job_id,
                )
            return _row(updated), True

    # --- what a worker does while running a job ----------------------------------------------------------------

    async def claim_job(self, *, job_id: str, lease: str) -> JobRow | None:
        """Mark the job running under a new lease (a job left running by a dead worker is taken over).
        None when it is finished, cancelled or gone."""
        row = await self._fetchrow_lazy(
            f"""
            UPDATE jobs SET status = 'running', lease = $2, attempts = attempts + 1,
                            started_at = coalesce(started_at, now()), updated_at = now()
            WHERE id = $1 AND status IN ('queued', 'running')
            RETURNING {_COLUMNS}
            """,
            job_id,
            lease,
        )
        return None if row is None else _row(row)

    async def update_progress(self, *, job_id: str, lease: str, stage: str | None, progress: int) -> bool:
        row = await self._fetchrow_lazy(
            "UPDATE jobs SET stage = $3, progress = $4, updated_at = now() "
            "WHERE id = $1 AND lease = $2 AND status = 'running' RETURNING 1",
            job_id,
            lease,
            stage,
            progress,
        )
        return row is not None

    async def finish_job(
        self,
        *,
        job_id: str,
        lease: str,
        status: Literal["succeeded", "failed", "cancelled"],
        result: str | None = None,
        error: str | None = None,
    ) -> bool:
        row = await self._fetchrow(
            """
            UPDATE jobs SET status = $3, result = $4::jsonb, error = $5, lease = NULL,
                            progress = CASE WHEN $3 = 'succeeded' THEN 100 ELSE progress END,
                            finished_at = now(), updated_at = now()
            WHERE id = $1 AND lease = $2 AND status = 'running'
            RETURNING 1
            """,
            job_id,
            lease,
            status,
            result,
            error,
        )
        return row is not None

    async def release_job(self, *, job_id: str, lease: str) -> bool:
        """Hand a running job back to the queue (its worker is stopping); a clean hand-back is not an attempt."""
        row = await self._fetchrow(
            "UPDATE jobs SET status = 'queued', lease = NULL, attempts = greatest(attempts - 1, 0), "
            "updated_at = now() WHERE id = $1 AND lease = $2 AND status = 'running' RETURNING 1",
            job_id,
            lease,
        )
        return row is not None

    async def get_step(self, *, job_id: str, name: str) -> tuple[bool, Any]:
        """(found, recorded JSON result) of a finished step."""
        row = await self._fetchrow("SELECT result FROM job_steps WHERE job_id = $1 AND name = $2", job_id, name)
        return (False, None) if row is None else (True, orjson.loads(row["result"]))

    async def insert_step(
        self, *, job_id: str, tenant_id: str, lease: str, name: str, result: str, require_lease: bool
    ) -> tuple[bool, bool]:
        """Record a finished step: (this worker still holds the job, the record is new). With `require_lease`
        nothing is recorded once the job was handed to another worker, and the job row stays share-locked to the
        end of the caller's transaction, so a transactional step and a takeover cannot interleave. Without it the
        step is recorded anyway: its effects happened, and the run that now holds the job must not repeat them."""
        row = await self._fetchrow(
            """
            WITH owned AS (SELECT id FROM jobs WHERE id = $1 AND lease = $2 FOR SHARE),
            ins AS (
                INSERT INTO job_steps (job_id, tenant_id, name, result)
                SELECT $1, $3, $4, $5::jsonb WHERE NOT $6::boolean OR EXISTS (SELECT 1 FROM owned)
                ON CONFLICT DO NOTHING RETURNING 1
            )
            SELECT EXISTS (SELECT 1 FROM owned) AS owned, EXISTS (SELECT 1 FROM ins) AS inserted
            """,
            job_id,
            lease,
            tenant_id,
            name,
            result,
            require_lease,
        )
        return bool(row["owned"]), bool(row["inserted"])

    # --- stalled-job recovery ------------------------------------------------------------------------------------

    async def requeue_stalled(self, *, queues: list[str], stalled_seconds: float) -> list[StalledJob]:
        """Put back in the queue every running job of `queues` whose worker's heartbeat is older than
        `stalled_seconds` (or whose worker row is gone), and wake the workers listening on those queues.

        One transaction; rows another worker is requeueing at the same moment are skipped (SKIP LOCKED), and a job
        that a live worker took meanwhile no longer matches when its lock is taken (the condition is re-checked)."""
        async with self.db.transaction():
            rows = await self._fetch(
                """
                WITH stale AS MATERIALIZED (
                    SELECT id FROM procrastinate_workers WHERE last_heartbeat < now() - make_interval(secs => $2)
                )
                SELECT j.id, j.queue_name, j.abort_requested FROM procrastinate_jobs j
                WHERE j.status = 'doing' AND j.queue_name = ANY($1::varchar[])
                  AND (j.worker_id IS NULL OR j.worker_id IN (SELECT id FROM stale))
                ORDER BY j.id
                FOR UPDATE OF j SKIP LOCKED
                """,
                queues,
                stalled_seconds,
            )
            if not rows:
                return []
            stalled = [StalledJob(r["id"], r["queue_name"], r["abort_requested"]) for r in rows]
            requeue = [s.procrastinate_id for s in stalled if not s.cancelled]
            cancel = [s.procrastinate_id for s in stalled if s.cancelled]
            await self._fetch(
                "SELECT procrastinate_retry_job_v2(id, now(), NULL, NULL, NULL) FROM unnest($1::bigint[]) AS id",
                requeue,
            )
            await self._fetch(
                "SELECT procrastinate_finish_job_v1(id, 'aborted', false) FROM unnest($1::bigint[]) AS id", cancel
            )
            await self._fetch(
                """
                UPDATE jobs SET lease = NULL, updated_at = now(),
                    status = CASE WHEN procrastinate_id = ANY($2::bigint[]) THEN 'cancelled' ELSE 'queued' END,
                    error = CASE WHEN procrastinate_id = ANY($2::bigint[]) THEN 'cancelled on request' ELSE error END,
                    finished_at = CASE WHEN procrastinate_id = ANY($2::bigint[]) THEN now() ELSE finished_at END
                WHERE procrastinate_id = ANY($1::bigint[] || $2::bigint[]) AND status IN ('queued', 'running')
                """,
                requeue,
                cancel,
            )
            # procrastinate notifies on insert only; a requeued job would otherwise wait for the next poll.
            await self._fetch(
                """
                SELECT pg_notify(channel, json_build_object('type', 'job_inserted', 'job_id', id)::text)
                FROM unnest($1::bigint[], $2::text[]) AS r(id, queue),
                     unnest(ARRAY['procrastinate_queue_v1#' || queue, 'procrastinate_any_queue_v1']) AS channel
                """,
                requeue,
                [s.queue for s in stalled if not s.cancelled],
            )
            return stalled
