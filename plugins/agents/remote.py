"""`AgentsService` over HTTP: the same routes and schemas, served by the deployment at FAAS_AGENTS_URL."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator

from app.remote import RemoteService, remote_factory
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

# A run waits for its answer: up to its wall-time limit (an hour at most) and the model calls in it.
CLIENT_DEFAULTS = {"timeout": 3700.0, "deadline": 3700.0}


def _key(idempotency_key: str | None) -> dict[str, str] | None:
    return {"Idempotency-Key": idempotency_key} if idempotency_key else None


class RemoteAgentsService(RemoteService):
    async def create_agent(self, *, tenant_id: str, agent: AgentCreate) -> AgentPublic:
        return await self._client.call("POST", "", AgentPublic, tenant_id=tenant_id, body=agent)

    async def get_agent(self, *, tenant_id: str, agent_id: str) -> AgentPublic:
        return await self._client.call("GET", f"/{agent_id}", AgentPublic, tenant_id=tenant_id)

    async def list_agents(
        self, *, tenant_id: str, limit: int = 20, cursor: str | None = None, name: str | None = None
    ) -> AgentList:
        params = {"limit": limit, **({"cursor": cursor} if cursor else {}), **({"name": name} if name else {})}
        return await self._client.call("GET", "", AgentList, tenant_id=tenant_id, params=params)

    async def update_agent(self, *, tenant_id: str, agent_id: str, changes: AgentUpdate) -> AgentPublic:
        body = changes.model_dump(mode="json", include=changes.model_fields_set)
        return await self._client.call("PATCH", f"/{agent_id}", AgentPublic, tenant_id=tenant_id, body=body)

    async def delete_agent(self, *, tenant_id: str, agent_id: str) -> None:
        await self._client.send("DELETE", f"/{agent_id}", tenant_id=tenant_id)

    async def execute(
        self, *, tenant_id: str, agent_id: str, request: ExecuteIn, idempotency_key: str | None = None
    ) -> RunPublic:
        body = request.model_copy(update={"stream": False})
        return await self._client.call(
            "POST", f"/{agent_id}/execute", RunPublic, tenant_id=tenant_id, body=body, headers=_key(idempotency_key)
        )

    async def execute_stream(
        self, *, tenant_id: str, agent_id: str, request: ExecuteIn, idempotency_key: str | None = None
    ) -> AsyncIterator[bytes]:
        body = request.model_copy(update={"stream": True, "background": False})
        return await _started(
            self._client.stream(
                "POST", f"/{agent_id}/execute", tenant_id=tenant_id, body=body, headers=_key(idempotency_key)
            )
        )

    async def chat(
        self, *, tenant_id: str, agent_id: str, request: AgentChatIn, idempotency_key: str | None = None
    ) -> RunPublic:
        body = request.model_copy(update={"stream": False})
        return await self._client.call(
            "POST", f"/{agent_id}/chat", RunPublic, tenant_id=tenant_id, body=body, headers=_key(idempotency_key)
        )

    async def chat_stream(
        self, *, tenant_id: str, agent_id: str, request: AgentChatIn, idempotency_key: str | None = None
    ) -> AsyncIterator[bytes]:
        body = request.model_copy(update={"stream": True, "background": False})
        return await _started(
            self._client.stream(
                "POST", f"/{agent_id}/chat", tenant_id=tenant_id, body=body, headers=_key(idempotency_key)
            )
        )

    async def get_run(self, *, tenant_id: str, agent_id: str, run_id: str) -> RunPublic:
        return await self._client.call("GET", f"/{agent_id}/runs/{run_id}", RunPublic, tenant_id=tenant_id)

    async def cancel_run(self, *, tenant_id: str, agent_id: str, run_id: str) -> RunPublic:
        return await self._client.call("POST", f"/{agent_id}/runs/{run_id}/cancel", RunPublic, tenant_id=tenant_id)

    async def list_threads(
        self, *, tenant_id: str, agent_id: str, limit: int = 20, cursor: str | None = None
    ) -> ThreadList:
        params = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        return await self._client.call("GET", f"/{agent_id}/threads", ThreadList, tenant_id=tenant_id, params=params)

    async def get_thread(
        self, *, tenant_id: str, agent_id: str, thread_id: str, limit: int = MESSAGES_PAGE, cursor: str | None = None
    ) -> ThreadPublic:
        params = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        return await self._client.call(
            "GET", f"/{agent_id}/threads/{thread_id}", ThreadPublic, tenant_id=tenant_id, params=params
        )

    async def delete_thread(self, *, tenant_id: str, agent_id: str, thread_id: str) -> None:
        await self._client.send("DELETE", f"/{agent_id}/threads/{thread_id}", tenant_id=tenant_id)


async def _started(chunks: AsyncGenerator[bytes, None]) -> AsyncIterator[bytes]:
    first = await anext(chunks)  # a failure before the first event raises here, as in direct mode
    return _chain(first, chunks)


async def _chain(first: bytes, rest: AsyncGenerator[bytes, None]) -> AsyncIterator[bytes]:
    try:
        yield first
        async for chunk in rest:
            yield chunk
    finally:
        await rest.aclose()


open_remote = remote_factory(RemoteAgentsService, defaults=CLIENT_DEFAULTS)
