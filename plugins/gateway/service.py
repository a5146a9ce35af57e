"""The direct, in-process gateway, opened by `open_direct(ctx)` with its providers, catalog, router, limiter
and ledger on one exit stack (on exit the ledger flushes what it still holds, then the upstream pool closes).

Every call goes the same way: resolve the public model name (404 listing the tenant's names if unknown),
serve from the cache plugin when the request asks and a stored answer exists (free for the tenant), reserve
the tenant's tokens and cost, call the router (deployments with fallbacks) with the provider held to the reserved
completion limit, and commit the outcome to the usage ledger, which also settles the reservation with the real
usage, before answering (`metering`; a failed or cancelled call is recorded too). Streams are rendered by
`streaming`, embeddings shaped by `vectors`, usage and policy reports by `reports`. Other plugins call `chat`,
`generate`, `embeddings` and `embed_texts` through the registry; the OpenAI-compatible routes call `completion`,
`stream` and `embeddings`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial
from typing import Any

from app.errors import NotFound
from app.listen import Listener
from app.plugin_kit import LocalDescription, PluginInfo, Readiness
from app.plugins import PluginContext, Services
from plugins.gateway import cached, wire
from plugins.gateway.anthropic_provider import AnthropicProvider
from plugins.gateway.catalog import LOCAL_EMBEDDING_MODEL, Catalog, Deployment, Kind, ModelEntry, build_catalog
from plugins.gateway.config import GatewayConfig
from plugins.gateway.ledger import UsageLedger
from plugins.gateway.limits import POLICY_CHANNEL, Limiter, PolicyCache, PostgresLimiter, RedisLimiter
from plugins.gateway.local_embeddings import DIMENSIONS, LocalEmbeddingProvider
from plugins.gateway.metering import Meter
from plugins.gateway.mock import MockProvider
from plugins.gateway.openai_provider import OpenAIProvider
from plugins.gateway.reports import policy_public, usage_page
from plugins.gateway.router import Router
from plugins.gateway.schemas import (
    ChatCompletionIn,
    ChatIn,
    ChatOut,
    EmbeddingsIn,
    GenerateIn,
    GenerateOut,
    ModelCard,
    ModelList,
    PolicyIn,
    PolicyPatch,
    PolicyPublic,
    Usage,
    UsageList,
    UsageQuery,
)
from plugins.gateway.store import GatewayStore
from plugins.gateway.streaming import sse_events
from plugins.gateway.upstream import HttpUpstream
from plugins.gateway.vectors import (
    OFF_LOOP_VALUES,
    check_output_size,
    embeddings_list,
    resize,
    texts_of,
    values_in,
)

log = logging.getLogger("faas.gateway")

CAPABILITIES = ("chat", "stream", "tools", "embeddings", "generate", "usage", "limits", "fallbacks")


class DirectGatewayService:
    def __init__(
        self,
        *,
        catalog: Catalog,
        router: Router,
        meter: Meter,
        store: GatewayStore,
        policies: PolicyCache,
        services: Services,
        about: LocalDescription,
    ) -> None:
        self._about = about
        self._policies = policies
        self.catalog = catalog
        self.router = router
        self.meter = meter
        self.store = store
        self._services = services

    async def describe(self) -> PluginInfo:
        return self._about.info()

    async def ready(self) -> Readiness:
        return {"ok": True, "breakers": self.router.breaker_states()}

    # ---- models -----------------------------------------------------------------------------------------

    async def _allowed(self, tenant_id: str) -> frozenset[str] | None:
        policy = await self._policies.get(tenant_id) or await self._policies.read(tenant_id)
        return policy.allowed_models

    async def list_models(self, *, tenant_id: str) -> ModelList:
        allowed = await self._allowed(tenant_id)
        return ModelList(
            data=[
                ModelCard(id=e.name, owned_by=e.owned_by)
                for e in await self.catalog.all()
                if allowed is None or e.name in allowed
            ]
        )

    async def _entry(self, tenant_id: str, name: str, kind: Kind) -> ModelEntry:
        entry = await self.catalog.get(name)
        if entry is not None and entry.kind == kind:
            return entry
        allowed = await self._allowed(tenant_id)
        names = [e.name for e in await self.catalog.all() if e.kind == kind and (allowed is None or e.name in allowed)]
        what = "an embeddings model" if kind == "embeddings" else "a chat model"
        problem = f"model {name!r} does not exist" if entry is None else f"model {name!r} is not {what}"
        raise NotFound(
            f"{problem}; {what.split(' ', 1)[1]}s you may use: {', '.join(names) or '(none)'}",
            extra={"code": "model_not_found", "param": "model", "allowed_models": names},
        )

    # ---- chat -------------------------------------------------------------------------------------------

    async def _from_cache(
        self, tenant_id: str, entry: ModelEntry, body: dict[str, Any], options: dict[str, Any] | None, started: float
    ) -> dict[str, Any] | None:
        if not options:
            return None
        hit = await cached.lookup(self._services, tenant_id=tenant_id, body=body, options=options)
        if hit is None:
            return None
        # A hit still passes the tenant's model and request checks, but reserves no tokens and costs nothing.
        await self.meter.reserve(tenant_id, entry, tokens=0, cost=0.0)
        await self.meter.record(
            tenant_id=tenant_id, model=entry.name, dep=None, started=started, status=200, cache_hit=True
        )
        return hit

    async def completion(self, *, tenant_id: str, request: ChatCompletionIn) -> dict[str, Any]:
        return await self._complete(tenant_id, request.model_dump(exclude_none=True))

    async def _complete(self, tenant_id: str, body: dict[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        options = body.pop("cache", None)
        body.pop("stream", None)
        body.pop("stream_options", None)
        entry = await self._entry(tenant_id, body["model"], "chat")
        hit = await self._from_cache(tenant_id, entry, body, options, started)
        if hit is not None:
            return hit
        reservation = await self.meter.reserve_chat(tenant_id, entry, body)
        async with self.meter.failures(tenant_id=tenant_id, model=entry.name, started=started, reservation=reservation):
            result, dep = await self.router.chat(entry, self._capped(body))
        u = result.get("usage") or {}
        await self.meter.record(
            tenant_id=tenant_id,
            model=entry.name,
            dep=dep,
            started=started,
            status=200,
            prompt=int(u.get("prompt_tokens") or 0),
            completion=int(u.get("completion_tokens") or 0),
            reservation=reservation,
        )
        if options:
            await cached.store(self._services, tenant_id=tenant_id, body=body, response=result, options=options)
        return result

    async def stream(self, *, tenant_id: str, request: ChatCompletionIn) -> AsyncIterator[bytes]:
        started = time.perf_counter()
        body = request.model_dump(exclude_none=True)
        body.pop("cache", None)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        entry = await self._entry(tenant_id, body["model"], "chat")
        reservation = await self.meter.reserve_chat(tenant_id, entry, body)
        async with self.meter.failures(
            tenant_id=tenant_id, model=entry.name, started=started, reservation=reservation, stream=True
        ):
            dep, chunks = await self.router.stream(entry, self._capped(body))
        return await sse_events(
            self.meter,
            tenant_id=tenant_id,
            entry=entry,
            dep=dep,
            chunks=chunks,
            reservation=reservation,
            include_usage=include_usage,
            started=started,
        )

    def _capped(self, body: dict[str, Any]) -> dict[str, Any]:
        """The body the provider gets: held to the completion limit that was reserved, also when the client set
        none (a provider's own default could otherwise exceed the reservation, or be unbounded)."""
        if body.get("max_completion_tokens") or body.get("max_tokens"):
            return body
        return {**body, "max_tokens": self.meter.completion_limit(body)}

    async def chat(self, *, tenant_id: str, request: ChatIn) -> ChatOut:
        body = request.model_dump(exclude_none=True)
        result = await self._complete(tenant_id, body)
        choice = (result.get("choices") or [{}])[0]
        return ChatOut(
            id=str(result.get("id") or ""),
            model=str(result.get("model") or request.model),
            message=choice.get("message") or {"role": "assistant", "content": ""},
            finish_reason=choice.get("finish_reason"),
            usage=_usage(result),
            cached=bool(result.get("cached")),
        )

    async def generate(self, *, tenant_id: str, request: GenerateIn) -> GenerateOut:
        messages: list[dict[str, Any]] = []
        if request.system:
            messages.append({"role": "system", "content": request.system})
        messages.append({"role": "user", "content": request.prompt})
        body = request.model_dump(exclude_none=True, exclude={"prompt", "system"})
        body["messages"] = messages
        result = await self._complete(tenant_id, body)
        choice = (result.get("choices") or [{}])[0]
        return GenerateOut(
            text=wire.text_of((choice.get("message") or {}).get("content")),
            model=str(result.get("model") or request.model),
            finish_reason=choice.get("finish_reason"),
            usage=_usage(result),
            cached=bool(result.get("cached")),
        )

    # ---- embeddings -------------------------------------------------------------------------------------

    async def _embed(self, tenant_id: str, request: EmbeddingsIn) -> tuple[list[list[float]], int, str]:
        started = time.perf_counter()
        texts = texts_of(request.input)
        entry = await self._entry(tenant_id, request.model or LOCAL_EMBEDDING_MODEL, "embeddings")
        local = any(d.provider == "local" for d in entry.deployments)
        check_output_size(len(texts), request.dimensions or (DIMENSIONS if local else None))
        reservation, estimate = await self.meter.reserve_embeddings(tenant_id, entry, texts)
        async with self.meter.failures(tenant_id=tenant_id, model=entry.name, started=started, reservation=reservation):
            vectors, tokens, dep = await self.router.embed(entry, texts, request.model_dump(exclude_none=True))
        tokens = tokens or estimate
        if dep.provider == "local" and request.dimensions not in (None, DIMENSIONS):
            size = request.dimensions or DIMENSIONS
            vectors = await asyncio.to_thread(lambda: [resize(v, size) for v in vectors])
        await self.meter.record(
            tenant_id=tenant_id,
            model=entry.name,
            dep=dep,
            started=started,
            status=200,
            prompt=tokens,
            reservation=reservation,
        )
        return vectors, tokens, entry.name

    async def embeddings(self, *, tenant_id: str, request: EmbeddingsIn) -> dict[str, Any]:
        vectors, tokens, model = await self._embed(tenant_id, request)
        build = partial(embeddings_list, vectors, model=model, tokens=tokens, encoding=request.encoding_format)
        return await asyncio.to_thread(build) if values_in(vectors) >= OFF_LOOP_VALUES else build()

    async def embed_texts(self, *, tenant_id: str, texts: list[str], model: str | None = None) -> list[list[float]]:
        if not texts:
            return []
        vectors, _, _ = await self._embed(tenant_id, EmbeddingsIn(model=model, input=list(texts)))
        return vectors

    # ---- usage and policy -------------------------------------------------------------------------------

    async def usage(self, *, tenant_id: str, query: UsageQuery) -> UsageList:
        return await usage_page(self.store, tenant_id=tenant_id, query=query)

    async def get_policy(self, *, tenant_id: str) -> PolicyPublic:
        await self.store.require_tenant(tenant_id=tenant_id)
        return policy_public(tenant_id, await self.store.get_limits(tenant_id=tenant_id))

    async def update_policy(self, *, tenant_id: str, policy: PolicyIn) -> PolicyPublic:
        await self.store.require_tenant(tenant_id=tenant_id)
        updated = await self.store.update_policy(tenant_id=tenant_id, policy=policy)
        # This replica's copy goes now, before the answer; the others drop theirs when the NOTIFY reaches them.
        self._policies.forget(tenant_id)
        return policy_public(tenant_id, updated)

    async def patch_policy(self, *, tenant_id: str, changes: PolicyPatch) -> PolicyPublic:
        await self.store.require_tenant(tenant_id=tenant_id)
        fields = {name: getattr(changes, name) for name in changes.model_fields_set}
        updated = await self.store.patch_policy(tenant_id=tenant_id, fields=fields)
        self._policies.forget(tenant_id)  # as in update_policy
        return policy_public(tenant_id, updated)


async def _retain(store: GatewayStore, days: int, *, every: float = 300.0, batch: int = 10_000) -> None:
    """Drop ledger rows older than `days`, now and every `every` seconds, a batch at a time until none is left:
    it keeps up with any rate of writes. A failure (the database away) waits for the next round."""
    while True:
        try:
            dropped = 0
            while (n := await store.expire_usage(days=days, batch=batch)) > 0:
                dropped += n
                if n < batch:
                    break
            if dropped:
                log.info("usage retention: dropped %d ledger rows older than %d days", dropped, days)
        except Exception as exc:
            log.warning("usage retention failed: %s: %s", type(exc).__name__, exc)
        await asyncio.sleep(every)


def _usage(result: dict[str, Any]) -> Usage:
    u = result.get("usage") or {}
    p, c = int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0)
    return Usage(prompt_tokens=p, completion_tokens=c, total_tokens=p + c)


@asynccontextmanager
async def open_direct(ctx: PluginContext) -> AsyncIterator[DirectGatewayService]:
    s = ctx.settings
    config = GatewayConfig.load(s)

    async with AsyncExitStack() as stack:
        http = HttpUpstream(max_connections=config.max_connections)
        stack.push_async_callback(http.aclose)
        openai, anthropic = OpenAIProvider(http), AnthropicProvider(http)

        async def lister(template: Deployment) -> list[str]:
            provider = openai if template.provider == "openai" else anthropic
            return await provider.list_models(template)

        catalog = build_catalog(config.config, s.environ, lister, ttl=config.models_ttl_seconds, mock=config.mock_model)
        router = Router(
            chat={"openai": openai, "anthropic": anthropic, "mock": MockProvider()},
            embeddings={"openai": openai, "local": LocalEmbeddingProvider()},
            fail_max=config.breaker_fail_max,
            reset_timeout=config.breaker_reset_seconds,
        )
        store = GatewayStore(ctx.db)
        policies = PolicyCache(store)
        listener = Listener(str(ctx.db.url), POLICY_CHANNEL, on_message=policies.forget, on_reset=policies.reset)
        policies.listening(lambda: listener.live)
        listener.start()
        stack.push_async_callback(listener.stop)
        limiter: Limiter
        if s.redis_url:
            redis_limiter = RedisLimiter(store, policies, s.redis_url, prefix=config.redis_prefix)
            stack.push_async_callback(redis_limiter.aclose)
            limiter = redis_limiter
        else:
            limiter = PostgresLimiter(store, policies)
        if config.usage_retention_days:
            retention = asyncio.create_task(_retain(store, config.usage_retention_days), name="gateway-retention")
            stack.callback(retention.cancel)
        ledger = UsageLedger(store, limiter, wait_seconds=config.ledger_wait_seconds)
        ledger.start()
        stack.push_async_callback(ledger.stop)
        meter = Meter(limiter=limiter, ledger=ledger, default_max_tokens=config.default_max_tokens)
        yield DirectGatewayService(
            catalog=catalog,
            router=router,
            meter=meter,
            store=store,
            policies=policies,
            services=ctx.services,
            about=LocalDescription(ctx, CAPABILITIES),
        )
