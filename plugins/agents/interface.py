"""The agents service's contract: `AgentsService`, the one module another plugin may import (for types).

Other plugins reach it as `services.get(AGENTS)`; the request and response types it takes are re-exported here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from app.plugin_kit import PluginService
from app.plugins import ServiceKey
from plugins.agents.schemas import (
    MESSAGES_PAGE,
    AgentChatIn,
    AgentCreate,
    AgentList,
    AgentPublic,
    AgentUpdate,
    ExecuteIn,
    RunPublic,
    ThreadList,
    ThreadPublic,
)

__all__ = [
    "AGENTS",
    "AgentChatIn",
    "AgentCreate",
    "AgentList",
    "AgentPublic",
    "AgentUpdate",
    "AgentsService",
    "ExecuteIn",
    "RunPublic",
    "ThreadList",
    "ThreadPublic",
]


class AgentsService(PluginService, Protocol):
    """What the agents plugin offers to endpoints and to other plugins, in either mode: agent definitions, threads,
    durable runs and tool calling.

    Every method is scoped to `tenant_id`: another tenant's agent, thread or run is NotFound (404), exactly like a
    missing one. Nothing lives in process memory: every call loads what it needs from the database, so any replica
    serves any call.
    """

    async def create_agent(self, *, tenant_id: str, agent: AgentCreate) -> AgentPublic:
        """Store a new agent. InvalidInput (422) when `llm_model` is not a model the gateway serves to this tenant
        (the problem's `models` lists those it may use)."""
        ...

    async def get_agent(self, *, tenant_id: str, agent_id: str) -> AgentPublic: ...

    async def list_agents(
        self, *, tenant_id: str, limit: int = 20, cursor: str | None = None, name: str | None = None
    ) -> AgentList:
        """The tenant's agents in creation order, a page at a time; `name` keeps only agents with that exact name."""
        ...

    async def update_agent(self, *, tenant_id: str, agent_id: str, changes: AgentUpdate) -> AgentPublic:
        """Change the fields `changes` sets (`model_fields_set`); `llm_model` is checked as at creation. A run
        uses the definition it found when it started (or was resumed by another worker)."""
        ...

    async def delete_agent(self, *, tenant_id: str, agent_id: str) -> None:
        """Delete the agent with its threads, messages and runs (a run in progress stops at its next step)."""
        ...

    async def execute(
        self, *, tenant_id: str, agent_id: str, request: ExecuteIn, idempotency_key: str | None = None
    ) -> RunPublic:
        """One run of `request.task` on a fresh thread. Waits for the run to end (completed, stopped by a limit,
        failed or cancelled) unless `request.background`: then it answers at once with the queued run, which a job
        on the core queue carries out (resumed by another worker if this one dies). A repeat with the same
        `idempotency_key` answers the run the first request made (waiting for it like the first would have);
        InvalidInput when that key was used for a different request."""
        ...

    async def execute_stream(
        self, *, tenant_id: str, agent_id: str, request: ExecuteIn, idempotency_key: str | None = None
    ) -> AsyncIterator[bytes]:
        """`execute` as server-sent events: `run` (the run as it starts), then `token` ({"text"}), `tool_call`
        ({"id", "name", "arguments"}) and `tool_result` ({"id", "name", "result"}) as they happen, then `done` with
        the final run. Errors before the first event raise here."""
        ...

    async def chat(
        self, *, tenant_id: str, agent_id: str, request: AgentChatIn, idempotency_key: str | None = None
    ) -> RunPublic:
        """A run answering `request.message` on `request.thread_id` (a new thread when None), from the thread's
        whole stored history. NotFound for a thread that is not this agent's; Conflict (409) while the thread has
        an active run. Otherwise as `execute`."""
        ...

    async def chat_stream(
        self, *, tenant_id: str, agent_id: str, request: AgentChatIn, idempotency_key: str | None = None
    ) -> AsyncIterator[bytes]:
        """`chat` as server-sent events, as `execute_stream`."""
        ...

    async def get_run(self, *, tenant_id: str, agent_id: str, run_id: str) -> RunPublic:
        """The run with every step recorded so far."""
        ...

    async def cancel_run(self, *, tenant_id: str, agent_id: str, run_id: str) -> RunPublic:
        """Cancel a queued run at once, or ask a running one to stop before its next step (it ends `cancelled`).
        Conflict (409) when the run has already ended."""
        ...

    async def list_threads(
        self, *, tenant_id: str, agent_id: str, limit: int = 20, cursor: str | None = None
    ) -> ThreadList:
        """The agent's threads in creation order."""
        ...

    async def get_thread(
        self, *, tenant_id: str, agent_id: str, thread_id: str, limit: int = MESSAGES_PAGE, cursor: str | None = None
    ) -> ThreadPublic:
        """The thread with a page of its messages in order (`cursor`: the previous page's `messages_next_cursor`)."""
        ...

    async def delete_thread(self, *, tenant_id: str, agent_id: str, thread_id: str) -> None:
        """Delete the thread with its messages and runs. Conflict (409) while a run of it is active."""
        ...


AGENTS: ServiceKey[AgentsService] = ServiceKey("agents")
