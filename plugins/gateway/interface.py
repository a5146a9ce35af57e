"""The gateway's contract: `GatewayService`, the one module another plugin may import (for types).

Other plugins reach it as `services.get(GATEWAY)` (agents, rag) or `services.optional(GATEWAY)` (the cache); the
request and response types it takes are re-exported here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from app.plugin_kit import PluginService
from app.plugins import ServiceKey
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

__all__ = [
    "GATEWAY",
    "ChatCompletionIn",
    "ChatIn",
    "ChatOut",
    "EmbeddingsIn",
    "GatewayService",
    "GenerateIn",
    "GenerateOut",
    "ModelList",
    "PolicyIn",
    "PolicyPatch",
    "PolicyPublic",
    "UsageList",
    "UsageQuery",
]


class GatewayService(PluginService, Protocol):
    """What the gateway offers to endpoints and to other plugins, in either mode. Every call is on behalf of
    `tenant_id`: it counts against that tenant's limits and budget and lands in its usage ledger."""

    async def list_models(self, *, tenant_id: str) -> ModelList:
        """The public model names this tenant may use."""
        ...

    async def completion(self, *, tenant_id: str, request: ChatCompletionIn) -> dict[str, Any]:
        """An OpenAI chat completion (`request.stream` is ignored)."""
        ...

    async def stream(self, *, tenant_id: str, request: ChatCompletionIn) -> AsyncIterator[bytes]:
        """Server-sent events of an OpenAI chat completion stream. Errors before the first chunk raise here;
        a later failure ends the stream with an `error` event and no `[DONE]`."""
        ...

    async def chat(self, *, tenant_id: str, request: ChatIn) -> ChatOut:
        """One assistant message (text and/or tool calls) for OpenAI-style messages."""
        ...

    async def generate(self, *, tenant_id: str, request: GenerateIn) -> GenerateOut:
        """Text for one prompt (and an optional system prompt)."""
        ...

    async def embeddings(self, *, tenant_id: str, request: EmbeddingsIn) -> dict[str, Any]:
        """An OpenAI embeddings list (`encoding_format` float or base64)."""
        ...

    async def embed_texts(self, *, tenant_id: str, texts: list[str], model: str | None = None) -> list[list[float]]:
        """Vectors for `texts`, in order. `model=None` is the local all-MiniLM-L6-v2 (384 dimensions)."""
        ...

    async def usage(self, *, tenant_id: str, query: UsageQuery) -> UsageList:
        """The tenant's ledger aggregated by UTC day and model."""
        ...

    async def get_policy(self, *, tenant_id: str) -> PolicyPublic:
        """The tenant's allowed models, limits and this month's spend (NotFound for an unknown tenant). An admin
        operation: the remote implementation calls the serving deployment with this deployment's admin key."""
        ...

    async def update_policy(self, *, tenant_id: str, policy: PolicyIn) -> PolicyPublic:
        """Replace the tenant's whole policy: a field left out or null is unlimited. An admin operation, as
        `get_policy`."""
        ...

    async def patch_policy(self, *, tenant_id: str, changes: PolicyPatch) -> PolicyPublic:
        """Change only the fields `changes` sets (`changes.model_fields_set`); the others keep their values. An admin
        operation, as `get_policy`."""
        ...


GATEWAY: ServiceKey[GatewayService] = ServiceKey("gateway")
