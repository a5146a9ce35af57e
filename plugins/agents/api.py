"""HTTP endpoints of the agents plugin (mounted under /api/v1/agents): they parse, call the service, and render."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute

from app.auth import tenant_id
from app.errors import InvalidInput
from app.pagination import PageQuery
from app.plugin_kit import describe_route
from app.plugins import service
from app.routing import api_route, empty_response, json_response, read_body, read_path, read_query
from plugins.agents.interface import AGENTS, AgentsService
from plugins.agents.schemas import (
    RUN_EVENT,
    AgentChatIn,
    AgentCreate,
    AgentList,
    AgentListQuery,
    AgentPath,
    AgentPublic,
    AgentUpdate,
    ExecuteIn,
    MessagePageQuery,
    RunPath,
    RunPublic,
    ThreadList,
    ThreadPath,
    ThreadPublic,
)

IDEMPOTENCY_MAX = 255


def _service(request: Request) -> AgentsService:
    return service(request, AGENTS)


def _key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is not None and not (0 < len(key) <= IDEMPOTENCY_MAX and key.isascii() and key.isprintable()):
        raise InvalidInput(f"Idempotency-Key must be 1 to {IDEMPOTENCY_MAX} printable ASCII characters")
    return key


def _events(events: Any) -> Response:
    return StreamingResponse(events, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def _run(run: RunPublic) -> Response:
    return json_response(run, status=202 if run.background else 200)


async def create_agent(request: Request) -> Response:
    body = await read_body(request, AgentCreate)
    return json_response(await _service(request).create_agent(tenant_id=tenant_id(request), agent=body), status=201)


async def list_agents(request: Request) -> Response:
    q = read_query(request, AgentListQuery)
    svc = _service(request)
    return json_response(
        await svc.list_agents(tenant_id=tenant_id(request), limit=q.limit, cursor=q.cursor, name=q.name)
    )


async def get_agent(request: Request) -> Response:
    p = read_path(request, AgentPath)
    return json_response(await _service(request).get_agent(tenant_id=tenant_id(request), agent_id=p.agent_id))


async def update_agent(request: Request) -> Response:
    p = read_path(request, AgentPath)
    body = await read_body(request, AgentUpdate)
    svc = _service(request)
    return json_response(await svc.update_agent(tenant_id=tenant_id(request), agent_id=p.agent_id, changes=body))


async def delete_agent(request: Request) -> Response:
    p = read_path(request, AgentPath)
    await _service(request).delete_agent(tenant_id=tenant_id(request), agent_id=p.agent_id)
    return empty_response()


async def execute(request: Request) -> Response:
    p = read_path(request, AgentPath)
    body = await read_body(request, ExecuteIn)
    svc, tenant, key = _service(request), tenant_id(request), _key(request)
    if body.stream and not body.background:
        return _events(
            await svc.execute_stream(tenant_id=tenant, agent_id=p.agent_id, request=body, idempotency_key=key)
        )
    return _run(await svc.execute(tenant_id=tenant, agent_id=p.agent_id, request=body, idempotency_key=key))


async def chat(request: Request) -> Response:
    p = read_path(request, AgentPath)
    body = await read_body(request, AgentChatIn)
    svc, tenant, key = _service(request), tenant_id(request), _key(request)
    if body.stream and not body.background:
        return _events(await svc.chat_stream(tenant_id=tenant, agent_id=p.agent_id, request=body, idempotency_key=key))
    return _run(await svc.chat(tenant_id=tenant, agent_id=p.agent_id, request=body, idempotency_key=key))


async def get_run(request: Request) -> Response:
    p = read_path(request, RunPath)
    svc = _service(request)
    return json_response(await svc.get_run(tenant_id=tenant_id(request), agent_id=p.agent_id, run_id=p.run_id))


async def cancel_run(request: Request) -> Response:
    p = read_path(request, RunPath)
    svc = _service(request)
    return json_response(await svc.cancel_run(tenant_id=tenant_id(request), agent_id=p.agent_id, run_id=p.run_id))


async def list_threads(request: Request) -> Response:
    p = read_path(request, AgentPath)
    q = read_query(request, PageQuery)
    svc, tenant = _service(request), tenant_id(request)
    return json_response(await svc.list_threads(tenant_id=tenant, agent_id=p.agent_id, limit=q.limit, cursor=q.cursor))


async def get_thread(request: Request) -> Response:
    p = read_path(request, ThreadPath)
    q = read_query(request, MessagePageQuery)
    svc, tenant = _service(request), tenant_id(request)
    thread = await svc.get_thread(
        tenant_id=tenant, agent_id=p.agent_id, thread_id=p.thread_id, limit=q.limit, cursor=q.cursor
    )
    return json_response(thread)


async def delete_thread(request: Request) -> Response:
    p = read_path(request, ThreadPath)
    await _service(request).delete_thread(tenant_id=tenant_id(request), agent_id=p.agent_id, thread_id=p.thread_id)
    return empty_response()


def routes() -> list[BaseRoute]:
    tags: dict[str, Any] = {"tags": ("agents",)}
    one: dict[str, Any] = {"path": AgentPath, **tags}
    run_answer: dict[str, Any] = {
        "response": RunPublic,
        "also": (202,),
        "content": {"text/event-stream": RUN_EVENT},
        "errors": (404, 409, 422),
        **one,
    }
    return [
        describe_route(AGENTS),
        api_route(
            "POST",
            "/",
            create_agent,
            "Create an agent",
            body=AgentCreate,
            response=AgentPublic,
            status=201,
            errors=(422,),
            **tags,
        ),
        api_route(
            "GET",
            "/",
            list_agents,
            "List agents (filter by name)",
            query=AgentListQuery,
            response=AgentList,
            errors=(422,),
            **tags,
        ),
        api_route("GET", "/{agent_id}", get_agent, "Get an agent", response=AgentPublic, errors=(404,), **one),
        api_route(
            "PATCH",
            "/{agent_id}",
            update_agent,
            "Change an agent",
            body=AgentUpdate,
            response=AgentPublic,
            errors=(404, 422),
            **one,
        ),
        api_route(
            "DELETE",
            "/{agent_id}",
            delete_agent,
            "Delete an agent with its threads and runs",
            status=204,
            errors=(404,),
            **one,
        ),
        api_route(
            "POST",
            "/{agent_id}/execute",
            execute,
            "Run a task on a fresh thread (wait, `stream` as server-sent events, or `background`: 202)",
            body=ExecuteIn,
            serves=("execute", "execute_stream"),
            **run_answer,
        ),
        api_route(
            "POST",
            "/{agent_id}/chat",
            chat,
            "Send a message on a thread, answered from its history (wait, `stream`, or `background`: 202)",
            body=AgentChatIn,
            serves=("chat", "chat_stream"),
            **run_answer,
        ),
        api_route(
            "GET",
            "/{agent_id}/runs/{run_id}",
            get_run,
            "Get a run with its steps",
            path=RunPath,
            response=RunPublic,
            errors=(404,),
            tags=("agents",),
        ),
        api_route(
            "POST",
            "/{agent_id}/runs/{run_id}/cancel",
            cancel_run,
            "Cancel a run",
            path=RunPath,
            response=RunPublic,
            errors=(404, 409),
            tags=("agents",),
        ),
        api_route(
            "GET",
            "/{agent_id}/threads",
            list_threads,
            "List an agent's threads",
            query=PageQuery,
            response=ThreadList,
            errors=(404, 422),
            **one,
        ),
        api_route(
            "GET",
            "/{agent_id}/threads/{thread_id}",
            get_thread,
            "Get a thread with a page of its messages",
            path=ThreadPath,
            query=MessagePageQuery,
            response=ThreadPublic,
            errors=(404, 422),
            tags=("agents",),
        ),
        api_route(
            "DELETE",
            "/{agent_id}/threads/{thread_id}",
            delete_thread,
            "Delete a thread with its runs",
            path=ThreadPath,
            status=204,
            errors=(404, 409),
            tags=("agents",),
        ),
    ]
