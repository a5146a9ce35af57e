"""The run loop: call the model through the gateway with the history and the tool definitions, execute the tool
calls it asks for, append their results, repeat until it answers without tool calls or a limit stops it.

Every model call and every tool call is a step, recorded (arguments, result, tokens, time) before the next one
starts; the loop's state is nothing but the thread's messages and these steps. So the same code starts a run and
resumes one another worker left: it replays the recorded steps and goes on from the first one not recorded. A tool
call recorded as done is never executed again; one in flight when its worker died runs again.

Limits come from the agent's config: steps, tool calls, tokens, wall time (per attempt), and the same tool called
with the same arguments three times in a row. A run that hits one ends `stopped` with that reason.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from app import codec
from app.errors import InvalidInput, ServiceError, Unavailable
from app.plugins import Services
from plugins.agents import tools
from plugins.agents.netguard import HttpGuard
from plugins.agents.schemas import AgentConfig
from plugins.agents.store import AgentRow, AgentsStore, AgentStorage, RunRow, StepRow
from plugins.gateway.interface import GATEWAY, ChatCompletionIn
from plugins.prompts.interface import PROMPTS

log = logging.getLogger("faas.agents")
Emit = Callable[[str, Any], Awaitable[None]]
OnStep = Callable[[int, int], Awaitable[None]]  # (steps recorded, max_steps): a job reports its progress
LEASE_MARGIN = 60.0  # seconds a sync run's lease outlasts its wall-time limit
REPEATS = 3


class RunLost(Exception):
    """Another worker recorded this run's next step first: this one stops."""


class _Stop(Exception):
    def __init__(self, status: str, reason: str | None = None, error: str | None = None) -> None:
        self.status, self.reason, self.error = status, reason, error


def _signature(name: str, args: Any) -> str:
    return name + ":" + codec.canonical(args).decode()


def _message_of(step: StepRow) -> dict[str, Any]:
    if step.kind == "model":
        return dict(step.result or {"role": "assistant", "content": ""})
    content = codec.dumps(step.result).decode()
    return {"role": "tool", "tool_call_id": step.tool_call_id, "content": content[: tools.RESULT_MAX_CHARS]}


def _normalise(message: dict[str, Any], seq: int) -> dict[str, Any]:
    """The assistant message as recorded: role, text, and tool calls each with a unique id and string arguments."""
    out: dict[str, Any] = {"role": "assistant", "content": message.get("content")}
    calls = []
    seen: set[str] = set()
    for i, call in enumerate(message.get("tool_calls") or []):
        fn = call.get("function") or {}
        cid = call.get("id") or ""
        if not isinstance(cid, str) or not cid or cid in seen:
            cid = f"call_{seq}_{i}"
        seen.add(cid)
        args = fn.get("arguments")
        calls.append(
            {
                "id": cid,
                "type": "function",
                "function": {
                    "name": str(fn.get("name") or ""),
                    "arguments": args if isinstance(args, str) else codec.dumps(args or {}).decode(),
                },
            }
        )
    if calls:
        out["tool_calls"] = calls
    return out


@dataclass
class _State:
    """What the recorded steps say: counts, tokens, the messages they add, and the tool calls still to run."""

    steps: list[StepRow] = field(default_factory=list)

    @property
    def next_seq(self) -> int:
        return len(self.steps)

    @property
    def tool_calls(self) -> int:
        return sum(1 for s in self.steps if s.kind == "tool")

    @property
    def tokens(self) -> int:
        return sum(s.prompt_tokens + s.completion_tokens for s in self.steps)

    def last_model(self) -> StepRow | None:
        return next((s for s in reversed(self.steps) if s.kind == "model"), None)

    def pending(self) -> list[dict[str, Any]]:
        last = self.last_model()
        if last is None or not last.result:
            return []
        done = {s.tool_call_id for s in self.steps[last.seq + 1 :]}
        return [c for c in last.result.get("tool_calls") or [] if c["id"] not in done]

    def repeats(self, signature: str) -> int:
        """How many tool calls in a row, ending with the last one, had this signature."""
        count = 0
        for s in reversed([s for s in self.steps if s.kind == "tool"]):
            if _signature(s.name, s.arguments) != signature:
                break
            count += 1
        return count


class RunLoop:
    def __init__(
        self, *, store: AgentsStore, agents: AgentStorage, services: Services, guard: HttpGuard, tool_timeout: float
    ) -> None:
        self.store = store
        self.agents = agents
        self.services = services
        self.guard = guard
        self.tool_timeout = tool_timeout

    async def drive(
        self,
        run: RunRow,
        *,
        agent: AgentRow | None = None,
        fresh: bool = False,
        emit: Emit | None = None,
        on_step: OnStep | None = None,
    ) -> RunRow | None:
        """Carry `run` from its last recorded step to its end. `agent`: its definition, when the caller has just
        loaded it; `fresh`: the caller has just created the run (running, no steps yet: nothing to claim or replay);
        `emit`: streams events; `on_step`: called after each recorded step, may raise RunLost. The settled run, or
        None when it had ended already, its agent is gone, or another worker holds it."""
        if agent is None:
            agent = await self.agents.load(tenant_id=run.tenant_id, agent_id=run.agent_id)
            if agent is None:
                return None
        config = AgentConfig.model_validate(agent.config)
        lease = config.max_seconds + LEASE_MARGIN
        claimed = run if fresh else await self.store.claim_run(run_id=run.id, lease_seconds=lease)
        if claimed is None:
            return None
        limit = asyncio.timeout(config.max_seconds)
        try:
            try:
                async with limit:
                    if claimed.cancel_requested:
                        raise _Stop("cancelled", "cancelled")
                    output = await self._loop(claimed, agent, config, lease, emit, on_step, fresh)
            except TimeoutError:
                if not limit.expired():
                    raise
                raise _Stop("stopped", "max_seconds") from None
            except ServiceError as exc:
                raise _Stop("failed", error=exc.detail) from None
            except (_Stop, RunLost):
                raise
            except Exception as exc:
                log.exception("run %s failed", run.id)
                raise _Stop("failed", error=f"internal error ({type(exc).__name__}); the log has the details") from None
            return await self.store.finish_run(run_id=run.id, status="completed", output=output)
        except _Stop as stop:
            return await self.store.finish_run(
                run_id=run.id, status=stop.status, stop_reason=stop.reason, error=stop.error
            )
        except RunLost:
            return None

    async def _system_prompt(self, agent: AgentRow, config: AgentConfig, tenant_id: str) -> str | None:
        if config.prompt is None:
            return agent.system_prompt
        prompts = self.services.optional(PROMPTS)
        if prompts is None:
            raise Unavailable("the agent's system prompt is a stored prompt, and the prompts service is not here")
        ref = config.prompt
        out = await prompts.render(tenant_id=tenant_id, name=ref.name, label=ref.label, variables=ref.variables)
        if out.text is not None:
            return out.text
        return "\n\n".join(m.content for m in out.messages or [] if isinstance(getattr(m, "content", None), str))

    async def _loop(
        self,
        run: RunRow,
        agent: AgentRow,
        config: AgentConfig,
        lease: float,
        emit: Emit | None,
        on_step: OnStep | None,
        fresh: bool,
    ) -> str:
        if not agent.llm_model:
            raise InvalidInput(f"agent {agent.agent_id} has no llm_model")
        system = await self._system_prompt(agent, config, run.tenant_id)
        offered = tools.offered(agent.capabilities, config, self.services)
        definitions = tools.definitions(offered)
        messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
        messages += [{"role": m.role, "content": m.content} for m in await self.store.history(run=run)]
        state = _State([] if fresh else await self.store.list_steps(run_id=run.id))
        messages += [_message_of(s) for s in state.steps]
        while True:
            pending = state.pending()
            if pending:
                call = pending[0]
                step = await self._tool_step(run, call, state, config, offered, emit)
            else:
                last = state.last_model()
                if last is not None and state.steps[-1] is last:
                    if last.error is not None:  # recorded by a worker that died before settling the run
                        raise _Stop("failed", error=last.error)
                    return str((last.result or {}).get("content") or "")
                if state.next_seq >= config.max_steps:
                    raise _Stop("stopped", "max_steps")
                if state.tokens >= config.max_tokens:
                    raise _Stop("stopped", "max_tokens")
                step = await self._model_step(
                    run, state.next_seq, agent.llm_model, messages, offered, definitions, config, emit
                )
            inserted, cancel = await self.store.insert_step(
                run_id=run.id, tenant_id=run.tenant_id, step=step, lease_seconds=lease
            )
            if not inserted:
                raise RunLost(run.id)
            state.steps.append(step)
            if on_step is not None:
                await on_step(state.next_seq, config.max_steps)
            messages.append(_message_of(step))
            if step.kind == "model" and step.error is not None:
                raise _Stop("failed", error=step.error)
            if cancel:
                raise _Stop("cancelled", "cancelled")

    async def _model_step(
        self,
        run: RunRow,
        seq: int,
        model: str,
        messages: list[dict[str, Any]],
        offered: list[str],
        definitions: list[dict[str, Any]],
        config: AgentConfig,
        emit: Emit | None,
    ) -> StepRow:
        body: dict[str, Any] = {"model": model, "messages": messages}
        if definitions:
            body["tools"] = definitions
        if config.temperature is not None:
            body["temperature"] = config.temperature
        if emit is not None:
            body.update(stream=True, stream_options={"include_usage": True})
        request = ChatCompletionIn.model_validate(body)
        gateway = self.services.get(GATEWAY)
        started, t0 = datetime.now(UTC), time.perf_counter()
        message: dict[str, Any] = {"role": "assistant", "content": None}
        usage: dict[str, Any] = {}
        error: str | None = None
        try:
            if emit is None:
                out = await gateway.completion(tenant_id=run.tenant_id, request=request)
                message = (out.get("choices") or [{}])[0].get("message") or message
                usage = out.get("usage") or {}
            else:
                message, usage = await _collect(await gateway.stream(tenant_id=run.tenant_id, request=request), emit)
        except ServiceError as exc:
            error = exc.detail
        return StepRow(
            seq=seq,
            kind="model",
            name=model,
            tool_call_id=None,
            arguments={"messages": len(messages), "tools": offered},
            result=None if error else _normalise(message, seq),
            error=error,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            started_at=started,
            duration_ms=(time.perf_counter() - t0) * 1000,
        )

    async def _tool_step(
        self,
        run: RunRow,
        call: dict[str, Any],
        state: _State,
        config: AgentConfig,
        offered: list[str],
        emit: Emit | None,
    ) -> StepRow:
        if state.next_seq >= config.max_steps:
            raise _Stop("stopped", "max_steps")
        if state.tool_calls >= config.max_tool_calls:
            raise _Stop("stopped", "max_tool_calls")
        name = call["function"]["name"]
        raw = call["function"]["arguments"]
        try:
            args: Any = codec.loads(raw) if raw.strip() else {}
            readable = True
        except ValueError:
            args, readable = raw, False
        if state.repeats(_signature(name, args)) >= REPEATS - 1:
            raise _Stop("stopped", "repeated_tool_call")
        if emit is not None:
            await emit("tool_call", {"id": call["id"], "name": name, "arguments": args})
        started, t0 = datetime.now(UTC), time.perf_counter()
        if not readable:
            result: Any = {"error": "the arguments are not valid JSON"}
        else:
            try:
                async with asyncio.timeout(self.tool_timeout):
                    result = await tools.call(
                        name,
                        args,
                        tenant_id=run.tenant_id,
                        allowed=offered,
                        services=self.services,
                        config=config,
                        guard=self.guard,
                    )
            except TimeoutError:
                result = {"error": f"the tool took longer than {self.tool_timeout:g} s"}
        if emit is not None:
            await emit("tool_result", {"id": call["id"], "name": name, "result": result})
        return StepRow(
            seq=state.next_seq,
            kind="tool",
            name=name,
            tool_call_id=call["id"],
            arguments=args,
            result=result,
            error=result.get("error") if isinstance(result, dict) and isinstance(result.get("error"), str) else None,
            prompt_tokens=0,
            completion_tokens=0,
            started_at=started,
            duration_ms=(time.perf_counter() - t0) * 1000,
        )


async def _collect(events: Any, emit: Emit) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read an OpenAI chat completion stream (server-sent events): emit each text delta as a `token` event, and
    return the whole assistant message with its usage."""
    text: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    usage: dict[str, Any] = {}
    buffer = b""
    async for chunk in events:
        buffer += chunk
        while b"\n\n" in buffer:
            event, buffer = buffer.split(b"\n\n", 1)
            for line in event.split(b"\n"):
                if not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":
                    continue
                payload = codec.loads(data)
                if "error" in payload:
                    raise Unavailable(str((payload["error"] or {}).get("message") or "the model's stream failed"))
                usage = payload.get("usage") or usage
                for choice in payload.get("choices") or []:
                    delta = choice.get("delta") or {}
                    if delta.get("content"):
                        text.append(delta["content"])
                        await emit("token", {"text": delta["content"]})
                    for part in delta.get("tool_calls") or []:
                        slot = calls.setdefault(int(part.get("index") or 0), {"id": None, "name": "", "arguments": ""})
                        slot["id"] = part.get("id") or slot["id"]
                        fn = part.get("function") or {}
                        slot["name"] += fn.get("name") or ""
                        slot["arguments"] += fn.get("arguments") or ""
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text) or None}
    if calls:
        message["tool_calls"] = [
            {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
            for _, c in sorted(calls.items())
        ]
    return message, usage
