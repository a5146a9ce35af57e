"""Platform endpoints of the gateway (mounted under /api/v1/gateway): chat, generate, usage, tenant policy.

These speak the platform's dialect (strict schemas, RFC 9457 problems); the OpenAI dialect lives in
`openai_api.py`. Endpoints only parse, call the service interface and render.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from app.auth import tenant_id
from app.plugin_kit import describe_route
from app.plugins import service
from app.routing import api_route, json_response, read_body, read_path, read_query
from plugins.gateway.interface import GATEWAY, GatewayService
from plugins.gateway.schemas import (
    ChatIn,
    ChatOut,
    GenerateIn,
    GenerateOut,
    PolicyIn,
    PolicyPatch,
    PolicyPublic,
    TenantPath,
    UsageList,
    UsageQuery,
)

_CALL_ERRORS = (404, 429, 502, 503, 504)


def _service(request: Request) -> GatewayService:
    return service(request, GATEWAY)


async def chat(request: Request) -> Response:
    """One assistant message (text and/or tool calls) for OpenAI-style messages."""
    body = await read_body(request, ChatIn)
    return json_response(await _service(request).chat(tenant_id=tenant_id(request), request=body))


async def generate(request: Request) -> Response:
    """Text for one prompt."""
    body = await read_body(request, GenerateIn)
    return json_response(await _service(request).generate(tenant_id=tenant_id(request), request=body))


async def usage(request: Request) -> Response:
    """This tenant's usage ledger aggregated by UTC day and model (paginated)."""
    query = read_query(request, UsageQuery)
    return json_response(await _service(request).usage(tenant_id=tenant_id(request), query=query))


async def get_policy(request: Request) -> Response:
    """A tenant's gateway policy (admin)."""
    p = read_path(request, TenantPath)
    return json_response(await _service(request).get_policy(tenant_id=p.tenant_id))


async def update_policy(request: Request) -> Response:
    """Replace a tenant's whole policy: allowed models, RPM, TPM and monthly budget (admin); a field left out or
    null is unlimited. PATCH changes some fields and keeps the others."""
    p = read_path(request, TenantPath)
    body = await read_body(request, PolicyIn)
    return json_response(await _service(request).update_policy(tenant_id=p.tenant_id, policy=body))


async def patch_policy(request: Request) -> Response:
    """Change only the policy fields the body names (admin); null means unlimited, a field left out is kept."""
    p = read_path(request, TenantPath)
    body = await read_body(request, PolicyPatch)
    return json_response(await _service(request).patch_policy(tenant_id=p.tenant_id, changes=body))


def routes() -> list[BaseRoute]:
    tags = ("gateway",)
    return [
        describe_route(GATEWAY),
        api_route(
            "POST",
            "/chat",
            chat,
            "Chat completion (platform shape)",
            body=ChatIn,
            response=ChatOut,
            tags=tags,
            errors=_CALL_ERRORS,
        ),
        api_route(
            "POST",
            "/generate",
            generate,
            "Generate text from a prompt",
            body=GenerateIn,
            response=GenerateOut,
            tags=tags,
            errors=_CALL_ERRORS,
        ),
        api_route("GET", "/usage", usage, "Usage by day and model", query=UsageQuery, response=UsageList, tags=tags),
        api_route(
            "GET",
            "/tenants/{tenant_id}/policy",
            get_policy,
            "Get a tenant's gateway policy",
            path=TenantPath,
            response=PolicyPublic,
            auth="admin",
            tags=tags,
            errors=(404,),
        ),
        api_route(
            "PUT",
            "/tenants/{tenant_id}/policy",
            update_policy,
            "Replace a tenant's gateway policy (fields left out become unlimited)",
            path=TenantPath,
            body=PolicyIn,
            response=PolicyPublic,
            auth="admin",
            tags=tags,
            errors=(404,),
        ),
        api_route(
            "PATCH",
            "/tenants/{tenant_id}/policy",
            patch_policy,
            "Change some fields of a tenant's gateway policy (the others are kept)",
            path=TenantPath,
            body=PolicyPatch,
            response=PolicyPublic,
            auth="admin",
            tags=tags,
            errors=(404,),
        ),
    ]
