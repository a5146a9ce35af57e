"""HTTP endpoints of the prompts plugin (mounted under /api/v1/prompts): they parse, call the service, and render."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from app.auth import tenant_id
from app.errors import NotFound
from app.pagination import PageQuery
from app.plugin_kit import describe_route
from app.routing import Schema, api_route, empty_response, read_body, read_query
from plugins.prompts.codec import render
from plugins.prompts.schemas import (
    Label,
    LabelMove,
    LabelPublic,
    PromptCreate,
    PromptList,
    PromptName,
    PromptPublic,
    RenderIn,
    RenderOut,
    VersionCreate,
    VersionPublic,
)
from plugins.prompts.service import PromptsService


class NamePath(Schema):
    name: PromptName


class LabelPath(Schema):
    name: PromptName
    label: Label


def _service(request: Request) -> PromptsService:
    service: PromptsService = request.state.services.prompts
    return service


def _path(request: Request, model: type[NamePath] | type[LabelPath]) -> Any:
    try:
        return model.model_validate(request.path_params)
    except ValidationError as exc:
        errors = [{"loc": ["path", *map(str, e["loc"])], "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        # No prompt or label can have such a name, so it is not found; `errors` says which part and what is allowed.
        raise NotFound("no prompt or label can have this name", extra={"errors": errors}) from None


async def create_prompt(request: Request) -> Response:
    body = await read_body(request, PromptCreate)
    return render(await _service(request).create_prompt(tenant_id=tenant_id(request), prompt=body), status=201)


async def list_prompts(request: Request) -> Response:
    q = read_query(request, PageQuery)
    return render(await _service(request).list_prompts(tenant_id=tenant_id(request), limit=q.limit, cursor=q.cursor))


async def get_prompt(request: Request) -> Response:
    p: NamePath = _path(request, NamePath)
    return render(await _service(request).get_prompt(tenant_id=tenant_id(request), name=p.name))


async def create_version(request: Request) -> Response:
    p: NamePath = _path(request, NamePath)
    body = await read_body(request, VersionCreate)
    created = await _service(request).create_version(tenant_id=tenant_id(request), name=p.name, version=body)
    return render(created, status=201)


async def move_label(request: Request) -> Response:
    p: LabelPath = _path(request, LabelPath)
    body = await read_body(request, LabelMove)
    moved = await _service(request).move_label(
        tenant_id=tenant_id(request), name=p.name, label=p.label, version=body.version
    )
    return render(moved)


async def delete_prompt(request: Request) -> Response:
    p: NamePath = _path(request, NamePath)
    await _service(request).delete_prompt(tenant_id=tenant_id(request), name=p.name)
    return empty_response()


async def render_prompt(request: Request) -> Response:
    p: NamePath = _path(request, NamePath)
    body = await read_body(request, RenderIn)
    out = await _service(request).render(
        tenant_id=tenant_id(request),
        name=p.name,
        label=body.label,
        version=body.version,
        variables=body.variables,
        strict=body.strict,
    )
    return render(out)


def routes() -> list[BaseRoute]:
    tags: dict[str, Any] = {"tags": ("prompts",)}
    return [
        describe_route("prompts"),
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
            "Get a prompt with its labels and versions",
            response=PromptPublic,
            errors=(404, 422),
            **tags,
        ),
        api_route(
            "DELETE",
            "/{name}",
            delete_prompt,
            "Delete a prompt and all its versions",
            status=204,
            errors=(404,),
            **tags,
        ),
        api_route(
            "POST",
            "/{name}/versions",
            create_version,
            "Add an immutable version (it becomes `latest`)",
            body=VersionCreate,
            response=VersionPublic,
            status=201,
            errors=(404, 422),
            **tags,
        ),
        api_route(
            "PUT",
            "/{name}/labels/{label}",
            move_label,
            "Point a label at a version",
            body=LabelMove,
            response=LabelPublic,
            errors=(404, 422),
            **tags,
        ),
        api_route(
            "POST",
            "/{name}/render",
            render_prompt,
            "Render a version (by label or number) with variables",
            body=RenderIn,
            response=RenderOut,
            errors=(400, 404, 422),
            **tags,
        ),
    ]
