"""SQL of the agents plugin: agent definitions (`AgentStorage`, the documented `agents` table) and threads, messages,
runs and run steps (`AgentsStore`).

Invariants:
- Every query names the tenant; another tenant's agent, thread or run is None here and NotFound above, exactly like a
  missing one. An agent id is global (the table's primary key), so `save` never takes over another tenant's row.
- A thread has at most one active (queued or running) run: the partial unique index `uq_agents_runs_active`
  decides, so two replicas racing for one thread cannot both start one (`AgentsStore.start_run` raises Conflict).
- A run step (run_id, seq) is written once (`insert_step` answers False when that step exists): a run resumed by
  another worker, or a stale worker still going, never records, and so never repeats, a step twice.
- A thread's messages are numbered 1, 2, ... in order (`agents_threads.message_count` is the last number, bumped
  under the thread's row lock).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from app.codec import ascii_json, loads
from app.db import Database
from app.errors import Conflict, InvalidInput, NotFound
from app.pagination import Page, decode_cursor, encode_cursor

ACTIVE = ("queued", "running")
FINISHED = ("completed", "stopped", "failed", "cancelled")


def new_id(kind: str) -> str:
    """`<kind>_` + 12 hex digits of milliseconds since the epoch + 8 random: ids sort by creation time, so a cursor
    page of them is in creation order."""
    return f"{kind}_{int(time.time() * 1000):012x}{secrets.token_hex(4)}"


@dataclass(frozen=True)
class AgentRow:
    agent_id: str
    tenant_id: str
    name: str
    description: str | None
    llm_model: str | None
    llm_provider: str | None
    system_prompt: str | None
    capabilities: list[str]
    config: dict[str, Any]
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class ThreadRow:
    id: str
    agent_id: str
    message_count: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class MessageRow:
    seq: int
    role: str
    content: str
    run_id: str | None
    created_at: datetime


@dataclass(frozen=True)
class RunRow:
    id: str
    tenant_id: str
    agent_id: str
    thread_id: str
    status: str
    input: str
    output: str | None
    stop_reason: str | None
    error: str | None
    background: bool
    job_id: str | None
    cancel_requested: bool
    prompt_tokens: int
    completion_tokens: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    request_hash: str | None = None  # what the Idempotency-Key was first used for (NULL without a key)


@dataclass(frozen=True)
class StepRow:
    seq: int
    kind: str  # "model" or "tool"
    name: str  # the model, or the tool
    tool_call_id: str | None
    arguments: Any  # model: the messages' count and tools offered; tool: the call's arguments
    result: Any  # model: the assistant message; tool: the tool's JSON result
    error: str | None
    prompt_tokens: int
    completion_tokens: int
    started_at: datetime
    duration_ms: float


def storable(value: Any) -> Any:
    """`value` with every NUL character replaced (U+FFFD): PostgreSQL text and jsonb hold none, and what a model or a
    tool returns is recorded whatever it holds."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [storable(v) for v in value]
    return value


def _json(value: Any) -> Any:
    return None if value is None else loads(value)


def _agent(r: Any) -> AgentRow:
    return AgentRow(
        agent_id=r["agent_id"],
        tenant_id=r["tenant_id"],
        name=r["name"],
        description=r["description"],
        llm_model=r["llm_model"],
        llm_provider=r["llm_provider"],
        system_prompt=r["system_prompt"],
        capabilities=_json(r["capabilities"]) or [],
        config=_json(r["config"]) or {},
        created_at=r["created_at"],
        updated_at=r["updated_at"],
    )


def _run(r: Any) -> RunRow:
    return RunRow(**{k: r[k] for k in RunRow.__dataclass_fields__})


def _step(r: Any) -> StepRow:
    return StepRow(
        seq=r["seq"],
        kind=r["kind"],
        name=r["name"],
        tool_call_id=r["tool_call_id"],
        arguments=_json(r["arguments"]),
        result=_json(r["result"]),
        error=r["error"],
        prompt_tokens=r["prompt_tokens"],
        completion_tokens=r["completion_tokens"],
        started_at=r["started_at"],
        duration_ms=r["duration_ms"],
    )


_AGENT = (
    "agent_id, tenant_id, name, description, llm_model, llm_provider, system_prompt, capabilities, config, "
    "created_at, updated_at"
)
_RUN = ", ".join(RunRow.__dataclass_fields__)
_STEP = (
    "seq, kind, name, tool_call_id, arguments, result, error, prompt_tokens, completion_tokens, started_at, duration_ms"
)


class AgentStorage:
    """The `agents` table: save, load, list and delete agent definitions, always within one tenant."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def save(self, agent: AgentRow) -> AgentRow:
        """Insert the agent, or replace the definition of the tenant's agent with that id (created_at stays,
        updated_at moves). NotFound when the id belongs to another tenant."""
        row = await self.db.fetchrow_raw(
            f"""
            INSERT INTO agents (agent_id, tenant_id, name, description, llm_model, llm_provider, system_prompt,
                                capabilities, config)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9::jsonb)
            ON CONFLICT (agent_id) DO UPDATE SET
                name = EXCLUDED.name, description = EXCLUDED.description, llm_model = EXCLUDED.llm_model,
                llm_provider = EXCLUDED.llm_provider, system_prompt = EXCLUDED.system_prompt,
                capabilities = EXCLUDED.capabilities, config = EXCLUDED.config, updated_at = now()
            WHERE agents.tenant_id = EXCLUDED.tenant_id
            RETURNING {_AGENT}
            """,
            agent.agent_id,
            agent.tenant_id,
            agent.name,
            agent.description,
            agent.llm_model,
            agent.llm_provider,
            agent.system_prompt,
            ascii_json(agent.capabilities),
            ascii_json(agent.config),
        )
        if row is None:
            raise NotFound(f"agent {agent.agent_id!r} does not exist")
        return _agent(row)

    async def load(self, *, tenant_id: str, agent_id: str) -> AgentRow | None:
        row = await self.db.fetchrow_raw(
            f"SELECT {_AGENT} FROM agents WHERE agent_id = $1 AND tenant_id = $2", agent_id, tenant_id
        )
        return None if row is None else _agent(row)

    async def list(
        self, *, tenant_id: str, limit: int, cursor: str | None = None, name: str | None = None
    ) -> Page[AgentRow]:
        """The tenant's agents in creation order (ids sort by creation time), optionally only those named `name`."""
        after = decode_cursor(cursor)
        async with self.db.connection() as conn:
            rows = await conn.raw_connection.fetch(
                f"SELECT {_AGENT} FROM agents WHERE tenant_id = $1 AND ($2::text IS NULL OR agent_id > $2) "
                "AND ($3::text IS NULL OR name = $3) ORDER BY agent_id LIMIT $4",
                tenant_id,
                after,
                name,
                limit + 1,
            )
        items = [_agent(r) for r in rows[:limit]]
        return Page(items, encode_cursor(items[-1].agent_id) if len(rows) > limit else None)

    async def delete(self, *, tenant_id: str, agent_id: str) -> bool:
        """Delete the agent with its threads, messages, runs and steps (foreign keys cascade); False if none."""
        row = await self.db.fetchrow_raw(
            "DELETE FROM agents WHERE agent_id = $1 AND tenant_id = $2 RETURNING agent_id", agent_id, tenant_id
        )
        return row is not None


class AgentsStore:
    """Threads, their messages, runs and run steps."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @asynccontextmanager
    async def _raw(self) -> AsyncIterator[Any]:
        async with self.db.connection() as conn:
            yield conn.raw_connection

    # ---- threads and messages ------------------------------------------------------------------------------

    async def get_thread(self, *, tenant_id: str, agent_id: str, thread_id: str) -> ThreadRow | None:
        row = await self.db.fetchrow_raw(
            "SELECT id, agent_id, message_count, created_at, updated_at FROM agents_threads "
            "WHERE id = $1 AND tenant_id = $2 AND agent_id = $3",
            thread_id,
            tenant_id,
            agent_id,
        )
        return None if row is None else ThreadRow(**dict(row))

    async def list_threads(self, *, tenant_id: str, agent_id: str, limit: int, cursor: str | None) -> Page[ThreadRow]:
        after = decode_cursor(cursor)
        async with self._raw() as raw:
            rows = await raw.fetch(
                "SELECT id, agent_id, message_count, created_at, updated_at FROM agents_threads "
                "WHERE tenant_id = $1 AND agent_id = $2 AND ($3::text IS NULL OR id > $3) ORDER BY id LIMIT $4",
                tenant_id,
                agent_id,
                after,
                limit + 1,
            )
        items = [ThreadRow(**dict(r)) for r in rows[:limit]]
        return Page(items, encode_cursor(items[-1].id) if len(rows) > limit else None)

    async def delete_thread(self, *, tenant_id: str, agent_id: str, thread_id: str) -> bool:
        """Delete a thread with its messages and runs. Conflict while a run of it is active."""
        async with self.db.transaction():
            async with self._raw() as raw:
                try:
                    await self._free_thread(raw, tenant_id=tenant_id, agent_id=agent_id, thread_id=thread_id)
                except NotFound:
                    return False
                await raw.execute("DELETE FROM agents_threads WHERE id = $1", thread_id)
        return True

    async def list_messages(
        self, *, tenant_id: str, thread_id: str, limit: int, cursor: str | None
    ) -> Page[MessageRow]:
        """Messages in order, a page at a time (the cursor is the last message number seen)."""
        after = decode_cursor(cursor)
        if after is not None and not (after.isdigit() and len(after) < 10):
            raise InvalidInput("cursor is not one this API issued: pass back messages_next_cursor unchanged")
        async with self._raw() as raw:
            rows = await raw.fetch(
                "SELECT seq, role, content, run_id, created_at FROM agents_messages WHERE thread_id = $1 "
                "AND tenant_id = $2 AND seq > $3 ORDER BY seq LIMIT $4",
                thread_id,
                tenant_id,
                int(after or 0),
                limit + 1,
            )
        items = [MessageRow(**dict(r)) for r in rows[:limit]]
        return Page(items, encode_cursor(str(items[-1].seq)) if len(rows) > limit else None)

    async def history(self, *, run: RunRow) -> list[MessageRow]:
        """The thread's messages up to and including this run's user message: what the model is given."""
        async with self._raw() as raw:
            rows = await raw.fetch(
                "SELECT seq, role, content, run_id, created_at FROM agents_messages WHERE thread_id = $1 AND seq <= "
                "(SELECT seq FROM agents_messages WHERE thread_id = $1 AND run_id = $2 AND role = 'user') "
                "ORDER BY seq",
                run.thread_id,
                run.id,
            )
        return [MessageRow(**dict(r)) for r in rows]

    # ---- runs ----------------------------------------------------------------------------------------------

    async def find_idempotent(self, *, tenant_id: str, agent_id: str, key: str) -> RunRow | None:
        row = await self.db.fetchrow_raw(
            f"SELECT {_RUN} FROM agents_runs WHERE tenant_id = $1 AND agent_id = $2 AND idempotency_key = $3",
            tenant_id,
            agent_id,
            key,
        )
        return None if row is None else _run(row)

    async def start_run(
        self,
        *,
        tenant_id: str,
        agent_id: str,
        thread_id: str | None,
        text: str,
        background: bool,
        idempotency_key: str | None,
        lease_seconds: float,
        request_hash: str | None = None,
    ) -> RunRow:
        """A new run on the thread (a new thread when `thread_id` is None) with the user's message appended, in the
        caller's transaction: `queued` for the job queue when `background`, else `running` (its caller drives it).
        NotFound for a thread that is not this agent's; Conflict while the thread has an active run. A sync run
        whose replica died without finishing it (its lease ran out; runs of the job queue are recovered by the
        queue instead) is marked failed first, so a thread is never stuck."""
        run_id = new_id("run")
        async with self._raw() as raw:
            if thread_id is None:  # a new thread: nothing can be active on it yet
                thread_id = new_id("thr")
                await raw.execute(
                    "INSERT INTO agents_threads (id, tenant_id, agent_id) VALUES ($1, $2, $3)",
                    thread_id,
                    tenant_id,
                    agent_id,
                )
            else:
                await self._free_thread(raw, tenant_id=tenant_id, agent_id=agent_id, thread_id=thread_id)
            try:
                row = await raw.fetchrow(
                    f"INSERT INTO agents_runs (id, tenant_id, agent_id, thread_id, input, background, "
                    f"idempotency_key, lease_until, status, started_at, request_hash) VALUES ($1, $2, $3, $4, $5, "
                    f"$6, $7, now() + make_interval(secs => $8), CASE WHEN $6 THEN 'queued' ELSE 'running' END, "
                    f"CASE WHEN $6 THEN NULL ELSE now() END, $9) RETURNING {_RUN}",
                    run_id,
                    tenant_id,
                    agent_id,
                    thread_id,
                    text,
                    background,
                    idempotency_key,
                    lease_seconds,
                    request_hash,
                )
            except asyncpg.UniqueViolationError as exc:
                if exc.constraint_name == "uq_agents_runs_idempotency":
                    raise IdempotencyTaken from None
                raise Conflict(f"thread {thread_id} has an active run: wait for it or cancel it") from None
            await raw.execute(
                "WITH t AS (UPDATE agents_threads SET message_count = message_count + 1, updated_at = now() "
                "WHERE id = $1 RETURNING message_count) "
                "INSERT INTO agents_messages (thread_id, seq, tenant_id, run_id, role, content) "
                "SELECT $1, t.message_count, $2, $3, 'user', $4 FROM t",
                thread_id,
                tenant_id,
                run_id,
                text,
            )
        return _run(row)

    async def _free_thread(self, raw: Any, *, tenant_id: str, agent_id: str, thread_id: str) -> None:
        """Lock the thread's row; NotFound when it is not this agent's, Conflict while a run of it is active."""
        found = await raw.fetchrow(
            "SELECT id FROM agents_threads WHERE id = $1 AND tenant_id = $2 AND agent_id = $3 FOR UPDATE",
            thread_id,
            tenant_id,
            agent_id,
        )
        if found is None:
            raise NotFound(f"thread {thread_id!r} does not exist")
        # A sync run whose lease ran out lost its replica (or its stream was never read): it is failed here, and is
        # not in the way. Background runs are the job queue's to recover.
        active = await raw.fetchval(
            "WITH stale AS (UPDATE agents_runs SET status = 'failed', updated_at = now(), finished_at = now(), "
            "error = 'the replica running it stopped before it ended' WHERE thread_id = $1 "
            "AND status IN ('queued', 'running') "
            "AND NOT background AND lease_until < now() RETURNING id) "
            "SELECT id FROM agents_runs WHERE thread_id = $1 AND status IN ('queued', 'running') "
            "AND id NOT IN (SELECT id FROM stale)",
            thread_id,
        )
        if active is not None:
            raise Conflict(
                f"thread {thread_id} has an active run ({active}): wait for it or cancel it",
                extra={"run_id": active, "thread_id": thread_id},
            )

    async def set_job(self, *, run_id: str, job_id: str) -> None:
        await self.db.fetchrow_raw("UPDATE agents_runs SET job_id = $2 WHERE id = $1", run_id, job_id)

    async def get_run(self, *, tenant_id: str, run_id: str, agent_id: str | None = None) -> RunRow | None:
        row = await self.db.fetchrow_raw(
            f"SELECT {_RUN} FROM agents_runs WHERE id = $1 AND tenant_id = $2 AND ($3::text IS NULL OR agent_id = $3)",
            run_id,
            tenant_id,
            agent_id,
        )
        return None if row is None else _run(row)

    async def claim_run(self, *, run_id: str, lease_seconds: float) -> RunRow | None:
        """Mark the run running (again, after a worker died) and extend its lease; None when it has finished."""
        row = await self.db.fetchrow_raw(
            f"UPDATE agents_runs SET status = 'running', started_at = coalesce(started_at, now()), "
            f"lease_until = now() + make_interval(secs => $2), updated_at = now() "
            f"WHERE id = $1 AND status IN ('queued', 'running') RETURNING {_RUN}",
            run_id,
            lease_seconds,
        )
        return None if row is None else _run(row)

    async def request_cancel(self, *, tenant_id: str, agent_id: str, run_id: str) -> RunRow | None:
        """Ask an active run to stop; a queued one (not yet started) is cancelled at once."""
        row = await self.db.fetchrow_raw(
            f"""
            UPDATE agents_runs SET cancel_requested = true, updated_at = now(),
                status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END,
                stop_reason = CASE WHEN status = 'queued' THEN 'cancelled' ELSE stop_reason END,
                finished_at = CASE WHEN status = 'queued' THEN now() ELSE finished_at END
            WHERE id = $1 AND tenant_id = $2 AND agent_id = $3 AND status IN ('queued', 'running')
            RETURNING {_RUN}
            """,
            run_id,
            tenant_id,
            agent_id,
        )
        return None if row is None else _run(row)

    async def finish_run(
        self,
        *,
        run_id: str,
        status: str,
        output: str | None = None,
        stop_reason: str | None = None,
        error: str | None = None,
    ) -> RunRow | None:
        """Settle an active run and, when it answered, append its answer to the thread, in one transaction.
        None when it was settled already (by a cancellation or by another worker)."""
        async with self.db.transaction():
            async with self._raw() as raw:
                row = await raw.fetchrow(
                    f"UPDATE agents_runs SET status = $2, output = $3, stop_reason = $4, error = $5, "
                    f"finished_at = now(), updated_at = now(), lease_until = NULL "
                    f"WHERE id = $1 AND status IN ('queued', 'running') RETURNING {_RUN}",
                    run_id,
                    status,
                    storable(output),
                    stop_reason,
                    storable(error),
                )
                if row is None:
                    return None
                if output is not None:
                    await raw.execute(
                        "WITH t AS (UPDATE agents_threads SET message_count = message_count + 1, updated_at = now() "
                        "WHERE id = $1 RETURNING message_count) "
                        "INSERT INTO agents_messages (thread_id, seq, tenant_id, run_id, role, content) "
                        "SELECT $1, t.message_count, $2, $3, 'assistant', $4 FROM t",
                        row["thread_id"],
                        row["tenant_id"],
                        run_id,
                        storable(output),
                    )
        return _run(row)

    # ---- steps ---------------------------------------------------------------------------------------------

    async def list_steps(self, *, run_id: str) -> list[StepRow]:
        async with self._raw() as raw:
            rows = await raw.fetch(f"SELECT {_STEP} FROM agents_run_steps WHERE run_id = $1 ORDER BY seq", run_id)
        return [_step(r) for r in rows]

    async def insert_step(
        self, *, run_id: str, tenant_id: str, step: StepRow, lease_seconds: float
    ) -> tuple[bool, bool]:
        """Record a finished step and extend the run's lease, in one statement. Returns (inserted, cancel
        requested); not inserted means another worker recorded that step (this one must stop) or the run ended."""
        row = await self.db.fetchrow_raw(
            """
            WITH live AS (
                UPDATE agents_runs SET prompt_tokens = prompt_tokens + $10, completion_tokens = completion_tokens + $11,
                    lease_until = now() + make_interval(secs => $14), updated_at = now()
                WHERE id = $1 AND status = 'running'
                  AND NOT EXISTS (SELECT 1 FROM agents_run_steps WHERE run_id = $1 AND seq = $3)
                RETURNING cancel_requested
            ), ins AS (
                INSERT INTO agents_run_steps (run_id, tenant_id, seq, kind, name, tool_call_id, arguments, result,
                    error, prompt_tokens, completion_tokens, started_at, duration_ms)
                SELECT $1, $2, $3, $4, $5, $6, $7::jsonb, $8::jsonb, $9, $10, $11, $12, $13 FROM live
                ON CONFLICT DO NOTHING
                RETURNING seq
            )
            SELECT (SELECT count(*) FROM ins) AS inserted, (SELECT bool_or(cancel_requested) FROM live) AS cancel
            """,
            run_id,
            tenant_id,
            step.seq,
            step.kind,
            storable(step.name),
            storable(step.tool_call_id),
            None if step.arguments is None else ascii_json(storable(step.arguments)),
            None if step.result is None else ascii_json(storable(step.result)),
            storable(step.error),
            step.prompt_tokens,
            step.completion_tokens,
            step.started_at,
            step.duration_ms,
            lease_seconds,
        )
        return bool(row["inserted"]), bool(row["cancel"])

    async def cancel_requested(self, *, run_id: str) -> bool:
        row = await self.db.fetchrow_raw("SELECT cancel_requested, status FROM agents_runs WHERE id = $1", run_id)
        return row is None or bool(row["cancel_requested"]) or row["status"] not in ACTIVE


class IdempotencyTaken(Exception):
    """Another request with the same Idempotency-Key created its run first (the caller reads that run)."""
