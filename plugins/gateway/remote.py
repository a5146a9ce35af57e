"""The gateway service over HTTP: the same interface, served by the deployment at FAAS_GATEWAY_URL.

Chat, streaming and embeddings go to that deployment's OpenAI-compatible routes (their error bodies also carry
the problem members, so the same ServiceError comes back); chat, generate and usage to the platform routes.
Each call names its tenant in the signed X-Tenant-ID header, so limits and the ledger apply to that tenant.
Tenant policies go to that deployment's admin routes with this deployment's admin key (an admin endpoint is the
only caller, and it has checked that key already).
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ClassVar

import orjson

from app.errors import ServiceError, Unavailable
from app.http_client import raise_for_problem
from app.plugins import PluginContext
from app.remote import RemoteService
from plugins.gateway import wire
from plugins.gateway.schemas import (
    ChatCompletionIn,
    ChatIn,
    ChatOut,
    EmbeddingsIn,
    GenerateIn,
    GenerateOut,
    ModelList,
    PolicyIn,
    PolicyPublic,
    UsageList,
    UsageQuery,
)


class RemoteGatewayService(RemoteService):
    """`GatewayService` in remote mode; `describe()` and `ready()` come from `RemoteService`."""

    # A completion can run for minutes and the serving gateway may fall back across deployments (60 s each by
    # default): the service client's 10 s per try would cut ordinary LLM calls short.
    client_defaults: ClassVar[Mapping[str, float]] = {"timeout": 180.0, "deadline": 600.0}

    def __init__(self, ctx: PluginContext) -> None:
        super().__init__(ctx)
        self._admin_key = ctx.settings.admin_key

    def _as(self, tenant_id: str) -> dict[str, str]:
        return self.headers({"X-Tenant-ID": tenant_id})

    async def _root(self, method: str, path: str, tenant_id: str, body: Any = None) -> Any:
        response = await self.client.request(method, path, json_data=body, headers=self._as(tenant_id))
        with _problem_only():
            raise_for_problem(response)
        return orjson.loads(response.content)

    async def list_models(self, *, tenant_id: str) -> ModelList:
        return ModelList.model_validate(await self._root("GET", "/v1/models", tenant_id))

    async def completion(self, *, tenant_id: str, request: ChatCompletionIn) -> dict[str, Any]:
        body = request.model_dump(mode="json", exclude_none=True)
        body["stream"] = False
        result: dict[str, Any] = await self._root("POST", "/v1/chat/completions", tenant_id, body)
        return result

    # The interface's `stream` shadows RemoteService's generic streaming helper, which this class does not use.
    async def stream(  # type: ignore[override]
        self, *, tenant_id: str, request: ChatCompletionIn
    ) -> AsyncIterator[bytes]:
        body = request.model_dump(mode="json", exclude_none=True)
        body["stream"] = True
        chunks = self.client.stream("POST", "/v1/chat/completions", json_data=body, headers=self._as(tenant_id))
        # Take the first chunk now, so that a failure before any byte raises here, as in direct mode.
        with _problem_only():
            first = await anext(chunks)
        return _chain(first, chunks)

    async def chat(self, *, tenant_id: str, request: ChatIn) -> ChatOut:
        return await self.call(
            "POST",
            "/chat",
            ChatOut,
            body=request.model_dump(mode="json", exclude_none=True),
            headers={"X-Tenant-ID": tenant_id},
        )

    async def generate(self, *, tenant_id: str, request: GenerateIn) -> GenerateOut:
        return await self.call(
            "POST",
            "/generate",
            GenerateOut,
            body=request.model_dump(mode="json", exclude_none=True),
            headers={"X-Tenant-ID": tenant_id},
        )

    async def embeddings(self, *, tenant_id: str, request: EmbeddingsIn) -> dict[str, Any]:
        result: dict[str, Any] = await self._root(
            "POST", "/v1/embeddings", tenant_id, request.model_dump(mode="json", exclude_none=True)
        )
        return result

    async def embed_texts(self, *, tenant_id: str, texts: list[str], model: str | None = None) -> list[list[float]]:
        if not texts:
            return []
        # base64 is a quarter of the bytes of a JSON float list, and exact.
        result = await self.embeddings(
            tenant_id=tenant_id, request=EmbeddingsIn(model=model, input=list(texts), encoding_format="base64")
        )
        import numpy as np

        items = sorted(result["data"], key=lambda d: d["index"])
        return [np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4").tolist() for d in items]

    async def usage(self, *, tenant_id: str, query: UsageQuery) -> UsageList:
        return await self.call("GET", "/usage", UsageList, params=query, headers={"X-Tenant-ID": tenant_id})

    def _admin(self) -> dict[str, str]:
        if self._admin_key is None:
            raise Unavailable(
                "tenant policies are managed on the gateway deployment (FAAS_GATEWAY_URL), with the admin key"
            )
        return {"Authorization": f"Bearer {self._admin_key.get()}"}

    async def get_policy(self, *, tenant_id: str) -> PolicyPublic:
        return await self.call("GET", f"/tenants/{tenant_id}/policy", PolicyPublic, headers=self._admin())

    async def update_policy(self, *, tenant_id: str, policy: PolicyIn) -> PolicyPublic:
        return await self.call("PUT", f"/tenants/{tenant_id}/policy", PolicyPublic, body=policy, headers=self._admin())


@contextmanager
def _problem_only() -> Iterator[None]:
    """The OpenAI routes' error bodies carry an `error` object beside the problem members; it is their rendering,
    not part of the error, so it is dropped (the OpenAI routes here write their own; others would show it)."""
    try:
        yield
    except ServiceError as exc:
        exc.extra.pop("error", None)
        raise


async def _chain(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    try:
        yield first
        async for chunk in rest:
            yield chunk
    except ServiceError as exc:
        # As in direct mode: a failure after the first chunk ends the stream with an `error` event, no [DONE].
        body = {"error": {"message": exc.detail, "type": "upstream_error", "param": None, "code": exc.slug}}
        yield b"data: " + wire.dumps(body) + b"\n\n"
    finally:
        await rest.aclose()  # type: ignore[attr-defined]
