"""HTTP endpoints of the cache plugin (mounted under /api/v1/cache): they parse, call the service, and render.

The `/-/...` routes come first: a namespace cannot start with `-`, so they never shadow an entry's path.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from app.auth import tenant_id
from app.plugin_kit import describe_route
from app.plugins import service
from app.routing import api_route, empty_response, json_response, read_body, read_path
from plugins.cache.interface import CACHE, CacheService
from plugins.cache.schemas import (
    CacheStats,
    EntryPath,
    EntryPublic,
    EntryPut,
    NamespacePath,
    ResponseLookup,
    ResponseLookupResult,
    ResponseStore,
)


def _service(request: Request) -> CacheService:
    return service(request, CACHE)


async def get_entry(request: Request) -> Response:
    p = read_path(request, EntryPath)
    entry = await _service(request).get_entry(tenant_id=tenant_id(request), namespace=p.namespace, key=p.key)
    return json_response(entry)


async def set_entry(request: Request) -> Response:
    p = read_path(request, EntryPath)
    body = await read_body(request, EntryPut)
    entry = await _service(request).set_entry(
        tenant_id=tenant_id(request), namespace=p.namespace, key=p.key, value=body.value, ttl_seconds=body.ttl_seconds
    )
    return json_response(entry)


async def delete_entry(request: Request) -> Response:
    p = read_path(request, EntryPath)
    await _service(request).delete_entry(tenant_id=tenant_id(request), namespace=p.namespace, key=p.key)
    return empty_response()


async def clear_namespace(request: Request) -> Response:
    p = read_path(request, NamespacePath)
    await _service(request).clear_namespace(tenant_id=tenant_id(request), namespace=p.namespace)
    return empty_response()


async def stats(request: Request) -> Response:
    return json_response(await _service(request).stats(tenant_id=tenant_id(request)))


async def lookup_response(request: Request) -> Response:
    body = await read_body(request, ResponseLookup)
    found = await _service(request).lookup_response(
        tenant_id=tenant_id(request), request=body.request, semantic=body.semantic, threshold=body.threshold
    )
    if found is None:
        return json_response(ResponseLookupResult(hit=False))
    return json_response(ResponseLookupResult(hit=True, response=found.response, similarity=found.similarity))


async def store_response(request: Request) -> Response:
    body = await read_body(request, ResponseStore)
    await _service(request).store_response(
        tenant_id=tenant_id(request),
        request=body.request,
        response=body.response,
        ttl_seconds=body.ttl_seconds,
        semantic=body.semantic,
    )
    return empty_response()


def routes() -> list[BaseRoute]:
    tags: dict[str, Any] = {"tags": ("cache",)}
    return [
        describe_route(CACHE),
        api_route("GET", "/-/stats", stats, "The tenant's cache hit and miss counts", response=CacheStats, **tags),
        api_route(
            "POST",
            "/-/responses/lookup",
            lookup_response,
            "Look up a cached LLM response for a chat request (exact, then optionally semantic)",
            body=ResponseLookup,
            response=ResponseLookupResult,
            errors=(422, 503),
            **tags,
        ),
        api_route(
            "POST",
            "/-/responses",
            store_response,
            "Cache an LLM response for a chat request",
            body=ResponseStore,
            status=204,
            errors=(422, 503),
            **tags,
        ),
        api_route(
            "GET",
            "/{namespace}/{key}",
            get_entry,
            "Get a cached value",
            path=EntryPath,
            response=EntryPublic,
            errors=(404, 422),
            **tags,
        ),
        api_route(
            "PUT",
            "/{namespace}/{key}",
            set_entry,
            "Set a cached value with a TTL",
            path=EntryPath,
            body=EntryPut,
            response=EntryPublic,
            errors=(404, 413, 422),
            **tags,
        ),
        api_route(
            "DELETE",
            "/{namespace}/{key}",
            delete_entry,
            "Delete a cached value",
            path=EntryPath,
            status=204,
            errors=(404, 422),
            **tags,
        ),
        api_route(
            "DELETE",
            "/{namespace}",
            clear_namespace,
            "Clear a namespace at once",
            path=NamespacePath,
            status=204,
            errors=(404, 422),
            **tags,
        ),
    ]
