"""`GatewayService` over HTTP: the same interface, served by the deployment at FAAS_GATEWAY_URL.

Chat, streaming and embeddings go to that deployment's OpenAI-compatible routes (their error bodies also carry
the problem members, so the same ServiceError comes back); chat, generate and usage to the platform routes.
Each call names its tenant in the signed X-Tenant-ID header, so limits and the ledger apply to that tenant.
Tenant policies go to that deployment's admin routes with this deployment's admin key (an admin endpoint is the
only caller, and it has checked that key already), for tenants of this deployment's database only.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from app import codec
from app.errors import ServiceError, Unavailable
from app.plugins import PluginContext
from app.remote import PluginClient, RemoteService
from app.settings import Secret
from app.tenancy import TenantStore
from plugins.gateway.schemas import (
    ChatCompletionIn,
    ChatIn,
    ChatOut,
    EmbeddingsIn,
    GenerateIn,
    GenerateOut,
    ModelList,
    PolicyIn,
    PolicyPatch,
    PolicyPublic,
    UsageList,
    UsageQuery,
)

# A completion can run for minutes and the serving gateway may fall back across deployments (60 s each by
# default): the service client's 10 s per try would cut ordinary LLM calls short.
CLIENT_DEFAULTS = {"timeout": 180.0, "deadline": 600.0}


class RemoteGatewayService(RemoteService):
    def __init__(self, client: PluginClient, *, admin_key: Secret | None, tenants: TenantStore) -> None:
        super().__init__(client)
        self._admin_key = admin_key
        self._tenants = tenants

    async def _openai(self, method: str, path: str, tenant_id: str, body: Any = None) -> Any:
        with _problem_only():
            response = await self._client.send(method, path, tenant_id=tenant_id, body=body, root=True)
        return codec.loads(response.content)

    async def list_models(self, *, tenant_id: str) -> ModelList:
        return ModelList.model_validate(await self._openai("GET", "/v1/models", tenant_id))

    async def completion(self, *, tenant_id: str, request: ChatCompletionIn) -> dict[str, Any]:
        body = request.model_dump(mode="json", exclude_none=True)
        body["stream"] = False
        result: dict[str, Any] = await self._openai("POST", "/v1/chat/completions", tenant_id, body)
        return result

    async def stream(self, *, tenant_id: str, request: ChatCompletionIn) -> AsyncIterator[bytes]:
        body = request.model_dump(mode="json", exclude_none=True)
        body["stream"] = True
        chunks = self._client.stream("POST", "/v1/chat/completions", tenant_id=tenant_id, body=body, root=True)
        # Take the first chunk now, so that a failure before any byte raises here, as in direct mode.
        with _problem_only():
            first = await anext(chunks)
        return _chain(first, chunks)

    async def chat(self, *, tenant_id: str, request: ChatIn) -> ChatOut:
        body = request.model_dump(mode="json", exclude_none=True)
        return await self._client.call("POST", "/chat", ChatOut, tenant_id=tenant_id, body=body)

    async def generate(self, *, tenant_id: str, request: GenerateIn) -> GenerateOut:
        body = request.model_dump(mode="json", exclude_none=True)
        return await self._client.call("POST", "/generate", GenerateOut, tenant_id=tenant_id, body=body)

    async def embeddings(self, *, tenant_id: str, request: EmbeddingsIn) -> dict[str, Any]:
        body = request.model_dump(mode="json", exclude_none=True)
        result: dict[str, Any] = await self._openai("POST", "/v1/embeddings", tenant_id, body)
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
        return await self._client.call("GET", "/usage", UsageList, tenant_id=tenant_id, params=query)

    def _admin(self) -> dict[str, str]:
        if self._admin_key is None:
            raise Unavailable(
                "tenant policies are managed on the gateway deployment (FAAS_GATEWAY_URL), with the admin key"
            )
        return {"Authorization": f"Bearer {self._admin_key.get()}"}

    async def get_policy(self, *, tenant_id: str) -> PolicyPublic:
        # Tenants are created here, so here is where an unknown one is a 404. The call is signed for the tenant:
        # a gateway deployment on its own database learns the tenant from it.
        await self._tenants.get_tenant(tenant_id=tenant_id)
        return await self._client.call(
            "GET", f"/tenants/{tenant_id}/policy", PolicyPublic, tenant_id=tenant_id, headers=self._admin()
        )

    async def update_policy(self, *, tenant_id: str, policy: PolicyIn) -> PolicyPublic:
        await self._tenants.get_tenant(tenant_id=tenant_id)
        return await self._client.call(
            "PUT", f"/tenants/{tenant_id}/policy", PolicyPublic, tenant_id=tenant_id, body=policy, headers=self._admin()
        )

    async def patch_policy(self, *, tenant_id: str, changes: PolicyPatch) -> PolicyPublic:
        await self._tenants.get_tenant(tenant_id=tenant_id)
        body = changes.model_dump(mode="json", exclude_unset=True)  # what is left out must stay left out
        return await self._client.call(
            "PATCH", f"/tenants/{tenant_id}/policy", PolicyPublic, tenant_id=tenant_id, body=body, headers=self._admin()
        )


@contextmanager
def _problem_only() -> Iterator[None]:
    """The OpenAI routes' error bodies carry an `error` object beside the problem members; it is their rendering,
    not part of the error, so it is dropped (the OpenAI routes here write their own; others would show it)."""
    try:
        yield
    except ServiceError as exc:
        exc.extra.pop("error", None)
        raise


async def _chain(first: bytes, rest: AsyncGenerator[bytes, None]) -> AsyncIterator[bytes]:
    try:
        yield first
        async for chunk in rest:
            yield chunk
    except ServiceError as exc:
        # As in direct mode: a failure after the first chunk ends the stream with an `error` event, no [DONE].
        body = {"error": {"message": exc.detail, "type": "upstream_error", "param": None, "code": exc.slug}}
        yield b"data: " + codec.dumps(body) + b"\n\n"
    finally:
        await rest.aclose()


@asynccontextmanager
async def open_remote(ctx: PluginContext) -> AsyncIterator[RemoteGatewayService]:
    yield RemoteGatewayService(
        PluginClient(ctx, defaults=CLIENT_DEFAULTS), admin_key=ctx.settings.admin_key, tenants=TenantStore(ctx.db)
    )
