"""HTTP endpoints of the prompts plugin (mounted under /api/v1/prompts): they parse, call the service, and render."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from app.auth import tenant_id
from app.pagination import PageQuery
from app.plugin_kit import describe_route
from app.plugins import service
from app.routing import api_route, empty_response, json_response, read_body, read_path, read_query
from plugins.prompts.interface import PROMPTS, PromptsService
from plugins.prompts.schemas import (
    LabelMove,
    LabelPath,
    LabelPublic,
    NamePath,
    PromptCreate,
    PromptList,
    PromptPublic,
    RenderIn,
    RenderOut,
    VersionCreate,
    VersionPageQuery,
    VersionPublic,
)


def _service(request: Request) -> PromptsService:
    return service(request, PROMPTS)


async def create_prompt(request: Request) -> Response:
    body = await read_body(request, PromptCreate)
    created = await _service(request).create_prompt(tenant_id=tenant_id(request), prompt=body)
    return json_response(created, status=201)


async def list_prompts(request: Request) -> Response:
    q = read_query(request, PageQuery)
    page = await _service(request).list_prompts(tenant_id=tenant_id(request), limit=q.limit, cursor=q.cursor)
    return json_response(page)


async def get_prompt(request: Request) -> Response:
    p = read_path(request, NamePath)
    q = read_query(request, VersionPageQuery)
    prompts, tenant = _service(request), tenant_id(request)
    return json_response(await prompts.get_prompt(tenant_id=tenant, name=p.name, limit=q.limit, cursor=q.cursor))


async def create_version(request: Request) -> Response:
    p = read_path(request, NamePath)
    body = await read_body(request, VersionCreate)
    created = await _service(request).create_version(tenant_id=tenant_id(request), name=p.name, version=body)
    return json_response(created, status=201)


async def move_label(request: Request) -> Response:
    p = read_path(request, LabelPath)
    body = await read_body(request, LabelMove)
    moved = await _service(request).move_label(
        tenant_id=tenant_id(request), name=p.name, label=p.label, version=body.version
    )
    return json_response(moved)


async def delete_prompt(request: Request) -> Response:
    p = read_path(request, NamePath)
    await _service(request).delete_prompt(tenant_id=tenant_id(request), name=p.name)
    return empty_response()


async def render(request: Request) -> Response:
    p = read_path(request, NamePath)
    body = await read_body(request, RenderIn)
    out = await _service(request).render(
        tenant_id=tenant_id(request),
        name=p.name,
        label=body.label,
        version=body.version,
        variables=body.variables,
        strict=body.strict,
    )
    return json_response(out)


def routes() -> list[BaseRoute]:
    tags: dict[str, Any] = {"tags": ("prompts",)}
    return [
        describe_route(PROMPTS),
        api_route(
            "POST",
            "/",
            create_prompt,
            "Create a prompt with its first version",
            body=PromptCreate,
            response=PromptPublic,
            status=201,
            errors=(409, 422),
            **tags,
        ),
        api_route(
            "GET", "/", list_prompts, "List prompts", query=PageQuery, response=PromptList, errors=(422,), **tags
        ),
        api_route(
            "GET",
            "/{name}",
            get_prompt,
            "Get a prompt with its labels and a page of its versions, newest first",
            path=NamePath,
            query=VersionPageQuery,
            response=PromptPublic,
            errors=(404, 422),
            **tags,
        ),
        api_route(
            "DELETE",
            "/{name}",
            delete_prompt,
            "Delete a prompt and all its versions",
            path=NamePath,
            status=204,
            errors=(404,),
            **tags,
        ),
        api_route(
            "POST",
            "/{name}/versions",
            create_version,
            "Add an immutable version (it becomes `latest`)",
            path=NamePath,
            body=VersionCreate,
            response=VersionPublic,
            status=201,
            errors=(404, 409, 422),
            **tags,
        ),
        api_route(
            "PUT",
            "/{name}/labels/{label}",
            move_label,
            "Point a label at a version",
            path=LabelPath,
            body=LabelMove,
            response=LabelPublic,
            errors=(404, 422),
            **tags,
        ),
        api_route(
            "POST",
            "/{name}/render",
            render,
            "Render a version (by label or number) with variables",
            path=NamePath,
            body=RenderIn,
            response=RenderOut,
            errors=(400, 404, 422),
            **tags,
        ),
    ]
