"""`RagService` over HTTP: the same routes and schemas, served by the deployment at FAAS_RAG_URL."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator

from app.remote import RemoteService, remote_factory
from plugins.rag.schemas import (
    AnswerIn,
    AnswerOut,
    CollectionCreate,
    CollectionList,
    CollectionPublic,
    DocumentDetail,
    DocumentIn,
    DocumentList,
    DocumentsAdd,
    DocumentsAdded,
    SearchIn,
    SearchOut,
)

# Adding documents embeds them (seconds to minutes on a CPU); answers wait for a model.
CLIENT_DEFAULTS = {"timeout": 300.0, "deadline": 600.0}


class RemoteRagService(RemoteService):
    async def create_collection(self, *, tenant_id: str, collection: CollectionCreate) -> CollectionPublic:
        return await self._client.call("POST", "/collections", CollectionPublic, tenant_id=tenant_id, body=collection)

    async def list_collections(self, *, tenant_id: str, limit: int = 20, cursor: str | None = None) -> CollectionList:
        params = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        return await self._client.call("GET", "/collections", CollectionList, tenant_id=tenant_id, params=params)

    async def get_collection(self, *, tenant_id: str, collection_id: str) -> CollectionPublic:
        return await self._client.call("GET", f"/collections/{collection_id}", CollectionPublic, tenant_id=tenant_id)

    async def delete_collection(self, *, tenant_id: str, collection_id: str) -> None:
        await self._client.send("DELETE", f"/collections/{collection_id}", tenant_id=tenant_id)

    async def add_documents(self, *, tenant_id: str, collection_id: str, documents: list[DocumentIn]) -> DocumentsAdded:
        return await self._client.call(
            "POST",
            f"/collections/{collection_id}/documents",
            DocumentsAdded,
            tenant_id=tenant_id,
            body=DocumentsAdd(documents),
        )

    async def list_documents(
        self, *, tenant_id: str, collection_id: str, limit: int = 20, cursor: str | None = None
    ) -> DocumentList:
        params = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        return await self._client.call(
            "GET", f"/collections/{collection_id}/documents", DocumentList, tenant_id=tenant_id, params=params
        )

    async def get_document(self, *, tenant_id: str, collection_id: str, document_id: str) -> DocumentDetail:
        return await self._client.call(
            "GET", f"/collections/{collection_id}/documents/{document_id}", DocumentDetail, tenant_id=tenant_id
        )

    async def delete_document(self, *, tenant_id: str, collection_id: str, document_id: str) -> None:
        await self._client.send("DELETE", f"/collections/{collection_id}/documents/{document_id}", tenant_id=tenant_id)

    async def search(self, *, tenant_id: str, collection_id: str, request: SearchIn) -> SearchOut:
        return await self._client.call(
            "POST", f"/collections/{collection_id}/search", SearchOut, tenant_id=tenant_id, body=request
        )

    async def answer(self, *, tenant_id: str, collection_id: str, request: AnswerIn) -> AnswerOut:
        body = request.model_copy(update={"stream": False})
        return await self._client.call(
            "POST", f"/collections/{collection_id}/answer", AnswerOut, tenant_id=tenant_id, body=body
        )

    async def answer_stream(self, *, tenant_id: str, collection_id: str, request: AnswerIn) -> AsyncIterator[bytes]:
        body = request.model_copy(update={"stream": True})
        chunks = self._client.stream("POST", f"/collections/{collection_id}/answer", tenant_id=tenant_id, body=body)
        first = await anext(chunks)  # a failure before the first event raises here, as in direct mode
        return _chain(first, chunks)


async def _chain(first: bytes, rest: AsyncGenerator[bytes, None]) -> AsyncIterator[bytes]:
    try:
        yield first
        async for chunk in rest:
            yield chunk
    finally:
        await rest.aclose()


open_remote = remote_factory(RemoteRagService, defaults=CLIENT_DEFAULTS)
