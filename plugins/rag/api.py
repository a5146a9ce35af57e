"""HTTP endpoints of the rag plugin (mounted under /api/v1/rag): they parse, call the service, and render."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute

from app.auth import tenant_id
from app.pagination import PageQuery
from app.plugin_kit import describe_route
from app.plugins import service
from app.routing import api_route, empty_response, json_response, read_body, read_path, read_query
from plugins.rag.interface import RAG, RagService
from plugins.rag.schemas import (
    ANSWER_EVENT,
    AnswerIn,
    AnswerOut,
    CollectionCreate,
    CollectionList,
    CollectionPath,
    CollectionPublic,
    DocumentDetail,
    DocumentList,
    DocumentPath,
    DocumentsAdd,
    DocumentsAdded,
    SearchIn,
    SearchOut,
)

_GATEWAY_ERRORS = (429, 502, 503, 504)


def _service(request: Request) -> RagService:
    return service(request, RAG)


async def create_collection(request: Request) -> Response:
    body = await read_body(request, CollectionCreate)
    created = await _service(request).create_collection(tenant_id=tenant_id(request), collection=body)
    return json_response(created, status=201)


async def list_collections(request: Request) -> Response:
    q = read_query(request, PageQuery)
    page = await _service(request).list_collections(tenant_id=tenant_id(request), limit=q.limit, cursor=q.cursor)
    return json_response(page)


async def get_collection(request: Request) -> Response:
    p = read_path(request, CollectionPath)
    found = await _service(request).get_collection(tenant_id=tenant_id(request), collection_id=p.collection_id)
    return json_response(found)


async def delete_collection(request: Request) -> Response:
    p = read_path(request, CollectionPath)
    await _service(request).delete_collection(tenant_id=tenant_id(request), collection_id=p.collection_id)
    return empty_response()


async def add_documents(request: Request) -> Response:
    p = read_path(request, CollectionPath)
    body = await read_body(request, DocumentsAdd)
    added = await _service(request).add_documents(
        tenant_id=tenant_id(request), collection_id=p.collection_id, documents=body.root
    )
    return json_response(added, status=201 if added.searchable else 202)


async def list_documents(request: Request) -> Response:
    p = read_path(request, CollectionPath)
    q = read_query(request, PageQuery)
    page = await _service(request).list_documents(
        tenant_id=tenant_id(request), collection_id=p.collection_id, limit=q.limit, cursor=q.cursor
    )
    return json_response(page)


async def get_document(request: Request) -> Response:
    p = read_path(request, DocumentPath)
    doc = await _service(request).get_document(
        tenant_id=tenant_id(request), collection_id=p.collection_id, document_id=p.document_id
    )
    return json_response(doc)


async def delete_document(request: Request) -> Response:
    p = read_path(request, DocumentPath)
    await _service(request).delete_document(
        tenant_id=tenant_id(request), collection_id=p.collection_id, document_id=p.document_id
    )
    return empty_response()


async def search(request: Request) -> Response:
    p = read_path(request, CollectionPath)
    body = await read_body(request, SearchIn)
    out = await _service(request).search(tenant_id=tenant_id(request), collection_id=p.collection_id, request=body)
    return json_response(out)


async def answer(request: Request) -> Response:
    p = read_path(request, CollectionPath)
    body = await read_body(request, AnswerIn)
    svc, tenant = _service(request), tenant_id(request)
    if body.stream:
        events = await svc.answer_stream(tenant_id=tenant, collection_id=p.collection_id, request=body)
        return StreamingResponse(events, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
    return json_response(await svc.answer(tenant_id=tenant, collection_id=p.collection_id, request=body))


def routes() -> list[BaseRoute]:
    tags: dict[str, Any] = {"tags": ("rag",)}
    one = {"path": CollectionPath, **tags}
    return [
        describe_route(RAG),
        api_route(
            "POST",
            "/collections",
            create_collection,
            "Create a collection pinned to an embedding model",
            body=CollectionCreate,
            response=CollectionPublic,
            status=201,
            errors=(404, 409, 422, *_GATEWAY_ERRORS),
            **tags,
        ),
        api_route(
            "GET",
            "/collections",
            list_collections,
            "List collections",
            query=PageQuery,
            response=CollectionList,
            errors=(422,),
            **tags,
        ),
        api_route(
            "GET",
            "/collections/{collection_id}",
            get_collection,
            "Get a collection",
            response=CollectionPublic,
            errors=(404, 422),
            **one,
        ),
        api_route(
            "DELETE",
            "/collections/{collection_id}",
            delete_collection,
            "Delete a collection with its documents",
            status=204,
            errors=(404, 422),
            **one,
        ),
        api_route(
            "POST",
            "/collections/{collection_id}/documents",
            add_documents,
            "Add or replace up to 100 documents: 201 when searchable now, 202 with the job that indexes them",
            body=DocumentsAdd,
            response=DocumentsAdded,
            status=201,
            also=(202,),
            errors=(404, 413, 422, *_GATEWAY_ERRORS),
            **one,
        ),
        api_route(
            "GET",
            "/collections/{collection_id}/documents",
            list_documents,
            "List documents",
            query=PageQuery,
            response=DocumentList,
            errors=(404, 422),
            **one,
        ),
        api_route(
            "GET",
            "/collections/{collection_id}/documents/{document_id}",
            get_document,
            "Get a document with its chunks",
            path=DocumentPath,
            response=DocumentDetail,
            errors=(404, 422),
            **tags,
        ),
        api_route(
            "DELETE",
            "/collections/{collection_id}/documents/{document_id}",
            delete_document,
            "Delete a document from every index",
            path=DocumentPath,
            status=204,
            errors=(404, 422),
            **tags,
        ),
        api_route(
            "POST",
            "/collections/{collection_id}/search",
            search,
            "Search a collection (dense, keyword BM25 or hybrid)",
            body=SearchIn,
            response=SearchOut,
            errors=(404, 422, *_GATEWAY_ERRORS),
            **one,
        ),
        api_route(
            "POST",
            "/collections/{collection_id}/answer",
            answer,
            "Answer from the collection's passages, with citations (JSON, or server-sent events with `stream`)",
            body=AnswerIn,
            response=AnswerOut,
            content={"text/event-stream": ANSWER_EVENT},
            serves=("answer", "answer_stream"),
            errors=(404, 422, *_GATEWAY_ERRORS),
            **one,
        ),
    ]
