"""The direct (in-process) agents service, opened by `open_direct(ctx)`.

Nothing lives in process memory: each call loads the agent, thread or run from PostgreSQL. A run waits in the
request (`execute`/`chat`), streams (`*_stream`), or is an `agents.run` job on the core queue (`background`); the
three share one loop (runner.py), which records every step before the next, so a job resumed elsewhere goes on
from the last recorded step.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from app import codec
from app.errors import Conflict, InvalidInput, NotFound, ServiceError
from app.jobs import JobContext, JobLost, JobQueue
from app.plugin_kit import LocalDescription, PluginInfo, Readiness
from app.plugins import PluginContext, Services
from plugins.agents.config import AgentsConfig
from plugins.agents.jobs import KIND
from plugins.agents.netguard import HttpGuard
from plugins.agents.runner import LEASE_MARGIN, RunLoop, RunLost
from plugins.agents.schemas import (
    MESSAGES_PAGE,
    AgentChatIn,
    AgentConfig,
    AgentCreate,
    AgentList,
    AgentPublic,
    AgentUpdate,
    ExecuteIn,
    MessagePublic,
    RunPublic,
    RunUsage,
    StepPublic,
    ThreadList,
    ThreadPublic,
    ThreadSummary,
)
from plugins.agents.store import (
    FINISHED,
    AgentRow,
    AgentsStore,
    AgentStorage,
    IdempotencyTaken,
    RunRow,
    StepRow,
    ThreadRow,
    new_id,
)
from plugins.gateway.interface import GATEWAY

CAPABILITIES = ("runs:wait", "runs:stream", "runs:background", "tools")
POLL_SECONDS = 0.1  # how often a repeated request polls the run its Idempotency-Key names


def agent_public(row: AgentRow) -> AgentPublic:
    return AgentPublic(
        agent_id=row.agent_id,
        name=row.name,
        description=row.description,
        llm_model=row.llm_model,
        llm_provider=row.llm_provider,
        system_prompt=row.system_prompt,
        capabilities=row.capabilities,
        config=AgentConfig.model_validate(row.config),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _usage(prompt: int, completion: int) -> RunUsage:
    return RunUsage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


def _step(s: StepRow) -> StepPublic:
    return StepPublic(
        seq=s.seq,
        kind=s.kind,  # type: ignore[arg-type]  # the column's CHECK holds the same two values
        name=s.name,
        tool_call_id=s.tool_call_id,
        arguments=s.arguments,
        result=s.result,
        error=s.error,
        usage=_usage(s.prompt_tokens, s.completion_tokens),
        started_at=s.started_at,
        duration_ms=s.duration_ms,
    )


def run_public(row: RunRow, steps: list[StepRow]) -> RunPublic:
    return RunPublic(
        run_id=row.id,
        agent_id=row.agent_id,
        thread_id=row.thread_id,
        status=row.status,  # type: ignore[arg-type]
        output=row.output,
        stop_reason=row.stop_reason,  # type: ignore[arg-type]
        error=row.error,
        background=row.background,
        job_id=row.job_id,
        steps=[_step(s) for s in steps],
        usage=_usage(row.prompt_tokens, row.completion_tokens),
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
    )


def _thread(row: ThreadRow) -> ThreadSummary:
    return ThreadSummary(
        thread_id=row.id,
        agent_id=row.agent_id,
        message_count=row.message_count,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


@dataclasses.dataclass(frozen=True)
class _Ask:
    """What an execute or chat request asks: its route, its text, its thread (None: a new one), whether it runs in
    the background, and its Idempotency-Key."""

    route: str
    text: str
    thread_id: str | None
    background: bool
    key: str | None

    def fingerprint(self) -> str:
        """The hash a repeat with the same key must match. (Streaming or not is how the answer is sent, not what
        is asked: a client whose stream broke may repeat the request without it.)"""
        return hashlib.sha256(codec.canonical([self.route, self.text, self.thread_id, self.background])).hexdigest()


def _same_request(found: RunRow, fingerprint: str) -> RunRow:
    """The run an earlier request with this key made, when this request is the same one."""
    if found.request_hash is not None and found.request_hash != fingerprint:
        raise InvalidInput(
            f"this Idempotency-Key was already used for a different request (run {found.id}): "
            "send a new key for a new request",
            extra={"run_id": found.id},
        )
    return found


def sse(event: str, data: Any) -> bytes:
    payload = codec.dump_model(data) if isinstance(data, RunPublic) else codec.dumps(data)
    return b"event: " + event.encode() + b"\ndata: " + payload + b"\n\n"


class DirectAgentsService:
    def __init__(self, *, ctx: PluginContext, config: AgentsConfig, about: LocalDescription) -> None:
        self.agents = AgentStorage(ctx.db)
        self.runs = AgentsStore(ctx.db)
        self.db = ctx.db
        self._services: Services = ctx.services
        self._jobs: JobQueue = ctx.jobs
        self._about = about
        guard = HttpGuard(allow_networks=config.networks(), timeout=config.http_timeout)
        self.loop = RunLoop(
            store=self.runs, agents=self.agents, services=ctx.services, guard=guard, tool_timeout=config.tool_timeout
        )

    async def describe(self) -> PluginInfo:
        return self._about.info()

    async def ready(self) -> Readiness:
        return {"ok": True}

    # ---- agents --------------------------------------------------------------------------------------------

    async def _provider(self, tenant_id: str, model: str) -> str:
        """The provider serving `model` to this tenant; InvalidInput naming the models it may use otherwise."""
        models = (await self._services.get(GATEWAY).list_models(tenant_id=tenant_id)).data
        for card in models:
            if card.id == model:
                return card.owned_by
        names = sorted(c.id for c in models)
        raise InvalidInput(
            f"llm_model {model!r} is not a model the gateway serves to this tenant; use one of: "
            f"{', '.join(names) or 'none'}",
            extra={"models": names},
        )

    async def _agent(self, tenant_id: str, agent_id: str) -> AgentRow:
        row = await self.agents.load(tenant_id=tenant_id, agent_id=agent_id)
        if row is None:
            raise NotFound(f"agent {agent_id!r} does not exist")
        return row

    async def create_agent(self, *, tenant_id: str, agent: AgentCreate) -> AgentPublic:
        provider = await self._provider(tenant_id, agent.llm_model)
        row = AgentRow(
            agent_id=new_id("agt"),
            tenant_id=tenant_id,
            name=agent.name,
            description=agent.description,
            llm_model=agent.llm_model,
            llm_provider=provider,
            system_prompt=agent.system_prompt,
            capabilities=list(dict.fromkeys(agent.capabilities)),
            config=agent.config.model_dump(mode="json"),
        )
        return agent_public(await self.agents.save(row))

    async def get_agent(self, *, tenant_id: str, agent_id: str) -> AgentPublic:
        return agent_public(await self._agent(tenant_id, agent_id))

    async def list_agents(
        self, *, tenant_id: str, limit: int = 20, cursor: str | None = None, name: str | None = None
    ) -> AgentList:
        page = await self.agents.list(tenant_id=tenant_id, limit=limit, cursor=cursor, name=name)
        return AgentList(data=[agent_public(r) for r in page.items], next_cursor=page.next_cursor)

    async def update_agent(self, *, tenant_id: str, agent_id: str, changes: AgentUpdate) -> AgentPublic:
        row = await self._agent(tenant_id, agent_id)
        fields = changes.model_fields_set
        updated: dict[str, Any] = {}
        for name in ("name", "description", "system_prompt"):
            if name in fields:
                if name == "name" and changes.name is None:
                    raise InvalidInput("name cannot be null")
                updated[name] = getattr(changes, name)
        if "llm_model" in fields:
            if changes.llm_model is None:
                raise InvalidInput("llm_model cannot be null")
            updated["llm_model"] = changes.llm_model
            updated["llm_provider"] = await self._provider(tenant_id, changes.llm_model)
        if "capabilities" in fields:
            updated["capabilities"] = list(dict.fromkeys(changes.capabilities or []))
        if "config" in fields:
            updated["config"] = (changes.config or AgentConfig()).model_dump(mode="json")
        if not updated:
            return agent_public(row)
        merged = AgentRow(**{**row.__dict__, **updated})
        return agent_public(await self.agents.save(merged))

    async def delete_agent(self, *, tenant_id: str, agent_id: str) -> None:
        if not await self.agents.delete(tenant_id=tenant_id, agent_id=agent_id):
            raise NotFound(f"agent {agent_id!r} does not exist")

    # ---- runs ----------------------------------------------------------------------------------------------

    async def _public(self, row: RunRow) -> RunPublic:
        return run_public(row, await self.runs.list_steps(run_id=row.id))

    async def _start(self, tenant_id: str, agent_id: str, ask: _Ask) -> tuple[RunRow, AgentRow, bool]:
        """The new run (queued), or the one an earlier request with the same key made; its agent; whether it is
        new. A key already used for a different request (another route, text, thread or mode) is refused."""
        agent = await self._agent(tenant_id, agent_id)
        key = ask.key
        fingerprint = None
        if key is not None:
            fingerprint = ask.fingerprint()
            found = await self.runs.find_idempotent(tenant_id=tenant_id, agent_id=agent_id, key=key)
            if found is not None:
                return _same_request(found, fingerprint), agent, False
        lease = AgentConfig.model_validate(agent.config).max_seconds + LEASE_MARGIN
        try:
            async with self.db.transaction():
                row = await self.runs.start_run(
                    tenant_id=tenant_id,
                    agent_id=agent_id,
                    thread_id=ask.thread_id,
                    text=ask.text,
                    background=ask.background,
                    idempotency_key=key,
                    lease_seconds=lease,
                    request_hash=fingerprint,
                )
                if ask.background:
                    job = await self._jobs.enqueue(tenant_id=tenant_id, kind=KIND, payload={"run_id": row.id})
                    await self.runs.set_job(run_id=row.id, job_id=job.id)
                    row = dataclasses.replace(row, job_id=job.id)
        except IdempotencyTaken:
            assert key is not None and fingerprint is not None
            found = await self.runs.find_idempotent(tenant_id=tenant_id, agent_id=agent_id, key=key)
            if found is None:
                raise Conflict("a request with this Idempotency-Key is being processed: retry") from None
            return _same_request(found, fingerprint), agent, False
        return row, agent, True

    async def _settled(self, row: RunRow, agent: AgentRow) -> RunPublic:
        """The run once it has ended (a repeated request waits like the first one did, as long as the run may
        take), or at once when it runs in the background."""
        deadline = time.monotonic() + AgentConfig.model_validate(agent.config).max_seconds + LEASE_MARGIN
        while row.status not in FINISHED and not row.background and time.monotonic() < deadline:
            await asyncio.sleep(POLL_SECONDS)
            found = await self.runs.get_run(tenant_id=row.tenant_id, run_id=row.id)
            if found is None:
                raise NotFound(f"run {row.id!r} does not exist")
            row = found
        return await self._public(row)

    async def _wait(self, row: RunRow, agent: AgentRow) -> RunPublic:
        """Drive a new run in this request. A request that ends first (the client went away, the server stops)
        ends the run as failed, so its thread is free again."""
        task = asyncio.ensure_future(self.loop.drive(row, agent=agent, fresh=True))
        try:
            settled = await asyncio.shield(task)
        except asyncio.CancelledError:
            task.cancel()
            await asyncio.shield(self._abandon(row.id))
            raise
        found = settled or await self.runs.get_run(tenant_id=row.tenant_id, run_id=row.id)
        if found is None:
            raise NotFound(f"run {row.id!r} does not exist (its agent was deleted)")
        return await self._public(found)

    async def _abandon(self, run_id: str) -> None:
        await self.runs.finish_run(run_id=run_id, status="failed", error="the request running it ended first")

    async def _run(self, tenant_id: str, agent_id: str, ask: _Ask) -> RunPublic:
        row, agent, new = await self._start(tenant_id, agent_id, ask)
        if not new or ask.background:
            return await self._settled(row, agent)
        return await self._wait(row, agent)

    async def execute(
        self, *, tenant_id: str, agent_id: str, request: ExecuteIn, idempotency_key: str | None = None
    ) -> RunPublic:
        ask = _Ask("execute", request.task, None, request.background, idempotency_key)
        return await self._run(tenant_id, agent_id, ask)

    async def chat(
        self, *, tenant_id: str, agent_id: str, request: AgentChatIn, idempotency_key: str | None = None
    ) -> RunPublic:
        ask = _Ask("chat", request.message, request.thread_id, request.background, idempotency_key)
        return await self._run(tenant_id, agent_id, ask)

    async def _stream(self, tenant_id: str, agent_id: str, ask: _Ask) -> AsyncIterator[bytes]:
        row, agent, new = await self._start(tenant_id, agent_id, ask)
        if not new:
            return _once(await self._settled(row, agent))
        return self._events(row, agent)

    async def _events(self, row: RunRow, agent: AgentRow) -> AsyncIterator[bytes]:
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()

        async def emit(event: str, data: Any) -> None:
            queue.put_nowait(sse(event, data))

        async def drive() -> None:
            try:
                await self.loop.drive(row, agent=agent, fresh=True, emit=emit)
            finally:
                queue.put_nowait(None)

        yield sse("run", await self._public(row))
        task = asyncio.ensure_future(drive())
        try:
            while (event := await queue.get()) is not None:
                yield event
            await task
            found = await self.runs.get_run(tenant_id=row.tenant_id, run_id=row.id)
            if found is None:
                yield sse("error", {"detail": f"run {row.id} no longer exists (its agent was deleted)"})
                return
            yield sse("done", await self._public(found))
        except ServiceError as exc:
            yield sse("error", {"detail": exc.detail})
        finally:
            if not task.done():
                task.cancel()
                await asyncio.shield(self._abandon(row.id))

    async def execute_stream(
        self, *, tenant_id: str, agent_id: str, request: ExecuteIn, idempotency_key: str | None = None
    ) -> AsyncIterator[bytes]:
        return await self._stream(tenant_id, agent_id, _Ask("execute", request.task, None, False, idempotency_key))

    async def chat_stream(
        self, *, tenant_id: str, agent_id: str, request: AgentChatIn, idempotency_key: str | None = None
    ) -> AsyncIterator[bytes]:
        ask = _Ask("chat", request.message, request.thread_id, False, idempotency_key)
        return await self._stream(tenant_id, agent_id, ask)

    async def _run_row(self, tenant_id: str, agent_id: str, run_id: str) -> RunRow:
        row = await self.runs.get_run(tenant_id=tenant_id, run_id=run_id, agent_id=agent_id)
        if row is None:
            raise NotFound(f"run {run_id!r} does not exist")
        return row

    async def get_run(self, *, tenant_id: str, agent_id: str, run_id: str) -> RunPublic:
        return await self._public(await self._run_row(tenant_id, agent_id, run_id))

    async def cancel_run(self, *, tenant_id: str, agent_id: str, run_id: str) -> RunPublic:
        row = await self.runs.request_cancel(tenant_id=tenant_id, agent_id=agent_id, run_id=run_id)
        if row is None:
            ended = await self._run_row(tenant_id, agent_id, run_id)
            raise Conflict(f"run {run_id} has already ended ({ended.status})", extra={"run_status": ended.status})
        if row.job_id is not None:
            try:  # a queued job need not run at all; a running one stops at its next await, not its next step
                await self._jobs.cancel_job(tenant_id=tenant_id, job_id=row.job_id)
            except (Conflict, NotFound):
                pass
        return await self._public(row)

    async def run_job(self, ctx: JobContext) -> dict[str, Any]:
        """The `agents.run` job: carry the run on from its last recorded step (a retry after a worker died too)."""
        run_id = str(ctx.job.payload.get("run_id"))
        row = await self.runs.get_run(tenant_id=ctx.job.tenant_id, run_id=run_id)
        if row is None:
            return {"run_id": run_id, "status": "deleted"}

        async def progress(steps: int, limit: int) -> None:
            try:
                await ctx.progress(f"{steps} steps recorded", 100 * steps / limit)
            except JobLost:  # this worker was declared dead and the job handed on: the other one carries the run
                raise RunLost(run_id) from None

        try:
            settled = await self.loop.drive(row, on_step=progress)
        except asyncio.CancelledError:
            # Cancelled by the tenant (the run says so): settle it, shielded from a second cancellation. Otherwise
            # the worker is stopping: the run stays running and the job's next attempt resumes it.
            await asyncio.shield(self._settle_cancelled(run_id))
            raise
        status = settled.status if settled is not None else "ended elsewhere"
        return {"run_id": run_id, "status": status}

    async def _settle_cancelled(self, run_id: str) -> None:
        if await self.runs.cancel_requested(run_id=run_id):
            await self.runs.finish_run(run_id=run_id, status="cancelled", stop_reason="cancelled")

    # ---- threads -------------------------------------------------------------------------------------------

    async def list_threads(
        self, *, tenant_id: str, agent_id: str, limit: int = 20, cursor: str | None = None
    ) -> ThreadList:
        await self._agent(tenant_id, agent_id)
        page = await self.runs.list_threads(tenant_id=tenant_id, agent_id=agent_id, limit=limit, cursor=cursor)
        return ThreadList(data=[_thread(t) for t in page.items], next_cursor=page.next_cursor)

    async def get_thread(
        self, *, tenant_id: str, agent_id: str, thread_id: str, limit: int = MESSAGES_PAGE, cursor: str | None = None
    ) -> ThreadPublic:
        row = await self.runs.get_thread(tenant_id=tenant_id, agent_id=agent_id, thread_id=thread_id)
        if row is None:
            raise NotFound(f"thread {thread_id!r} does not exist")
        page = await self.runs.list_messages(tenant_id=tenant_id, thread_id=thread_id, limit=limit, cursor=cursor)
        messages = [
            MessagePublic(seq=m.seq, role=m.role, content=m.content, run_id=m.run_id, created_at=m.created_at)  # type: ignore[arg-type]
            for m in page.items
        ]
        return ThreadPublic(**_thread(row).model_dump(), messages=messages, messages_next_cursor=page.next_cursor)

    async def delete_thread(self, *, tenant_id: str, agent_id: str, thread_id: str) -> None:
        if not await self.runs.delete_thread(tenant_id=tenant_id, agent_id=agent_id, thread_id=thread_id):
            raise NotFound(f"thread {thread_id!r} does not exist")


async def _once(run: RunPublic) -> AsyncIterator[bytes]:
    yield sse("done", run)


@asynccontextmanager
async def open_direct(ctx: PluginContext) -> AsyncIterator[DirectAgentsService]:
    config = AgentsConfig.load(ctx.settings)
    yield DirectAgentsService(ctx=ctx, config=config, about=LocalDescription(ctx, CAPABILITIES))
