"""The gateway service interface (`GatewayService`) and its direct, in-process implementation.

Every call goes the same way: resolve the public model name (404 listing the tenant's names if unknown),
serve from the cache plugin when the request asks and a stored answer exists (free for the tenant), reserve
the tenant's tokens and cost, call the router (deployments with fallbacks), and hand the outcome to the usage
ledger, which also settles the reservation with the real usage. Other plugins call `chat`, `generate`,
`embeddings` and `embed_texts` through the registry; the OpenAI-compatible routes call `completion`, `stream`
and `embeddings`.
"""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from app.context import current_request_id
from app.errors import InvalidInput, NotFound, ServiceError
from app.pagination import decode_cursor, encode_cursor
from app.plugin_kit import LocalDescription, PluginInfo
from plugins.gateway import cached, wire
from plugins.gateway.catalog import LOCAL_EMBEDDING_MODEL, Catalog, Deployment, Kind, ModelEntry
from plugins.gateway.ledger import UsageLedger
from plugins.gateway.limits import Limiter, Reservation
from plugins.gateway.local_embeddings import DIMENSIONS
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
    PolicyPublic,
    Usage,
    UsageList,
    UsageQuery,
    UsageRow,
)
from plugins.gateway.store import GatewayStore, UsageEntry

CAPABILITIES = ("chat", "stream", "tools", "embeddings", "generate", "usage", "limits", "fallbacks")


class GatewayService(Protocol):
    """What the gateway offers to endpoints and to other plugins, in either mode. Every call is on behalf of
    `tenant_id`: it counts against that tenant's limits and budget and lands in its usage ledger."""

    async def describe(self) -> PluginInfo: ...

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

    async def get_policy(self, *, tenant_id: str) -> PolicyPublic: ...

    async def update_policy(self, *, tenant_id: str, policy: PolicyIn) -> PolicyPublic: ...


class DirectGatewayService:
    def __init__(
        self,
        *,
        catalog: Catalog,
        router: Router,
        limiter: Limiter,
        ledger: UsageLedger,
        store: GatewayStore,
        services: Any,
        default_max_tokens: int = 1024,
    ) -> None:
        self._description = LocalDescription("gateway", (), CAPABILITIES)
        self.catalog = catalog
        self.router = router
        self.limiter = limiter
        self.ledger = ledger
        self.store = store
        self._services = services
        self._default_max_tokens = default_max_tokens

    async def describe(self) -> PluginInfo:
        return await self._description.describe()

    async def ready(self) -> dict[str, Any]:
        return {"ok": True, "breakers": self.router.breaker_states()}

    # ---- models -----------------------------------------------------------------------------------------

    async def _allowed(self, tenant_id: str) -> list[str] | None:
        allowed: list[str] | None = (await self.store.get_limits(tenant_id=tenant_id))["allowed_models"]
        return allowed

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

    def _record(
        self,
        *,
        tenant_id: str,
        model: str,
        dep: Deployment | None,
        started: float,
        status: int,
        prompt: int = 0,
        completion: int = 0,
        reservation: Reservation | None = None,
        cache_hit: bool = False,
        stream: bool = False,
        error: str | None = None,
    ) -> None:
        cost = dep.cost(prompt, completion) if dep is not None and not cache_hit else 0.0
        entry = UsageEntry(
            tenant_id=tenant_id,
            created_at=datetime.now(UTC),
            request_id=current_request_id(),
            model=model,
            deployment=dep.id if dep else None,
            provider=dep.provider if dep else None,
            prompt_tokens=prompt,
            completion_tokens=completion,
            cost_usd=cost,
            latency_ms=(time.perf_counter() - started) * 1000,
            cache_hit=cache_hit,
            stream=stream,
            status=status,
            error=error[:500] if error else None,
        )
        self.ledger.record(entry, reservation.settle(prompt + completion, cost) if reservation else None)

    async def _reserve(self, tenant_id: str, entry: ModelEntry, body: dict[str, Any]) -> Reservation:
        out = body.get("max_completion_tokens") or body.get("max_tokens") or self._default_max_tokens
        prompt = wire.estimate_prompt_tokens(body)
        cost = max(d.cost(prompt, out) for d in entry.deployments)
        return await self.limiter.admit(tenant_id=tenant_id, model=entry.name, tokens=prompt + out, cost=cost)

    async def _from_cache(
        self, tenant_id: str, entry: ModelEntry, body: dict[str, Any], options: dict[str, Any] | None, started: float
    ) -> dict[str, Any] | None:
        if not options:
            return None
        hit = await cached.lookup(self._services, tenant_id=tenant_id, body=body, options=options)
        if hit is None:
            return None
        # A hit still passes the tenant's model and request checks, but reserves no tokens and costs nothing.
        await self.limiter.admit(tenant_id=tenant_id, model=entry.name, tokens=0, cost=0.0)
        self._record(tenant_id=tenant_id, model=entry.name, dep=None, started=started, status=200, cache_hit=True)
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
        reservation = await self._reserve(tenant_id, entry, body)
        try:
            result, dep = await self.router.chat(entry, body)
        except ServiceError as exc:
            self._record(
                tenant_id=tenant_id,
                model=entry.name,
                dep=None,
                started=started,
                status=exc.status,
                reservation=reservation,
                error=exc.detail,
            )
            raise
        u = result.get("usage") or {}
        self._record(
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
        reservation = await self._reserve(tenant_id, entry, body)
        try:
            dep, chunks = await self.router.stream(entry, body)
        except ServiceError as exc:
            self._record(
                tenant_id=tenant_id,
                model=entry.name,
                dep=None,
                started=started,
                status=exc.status,
                reservation=reservation,
                stream=True,
                error=exc.detail,
            )
            raise
        return self._sse(tenant_id, entry, dep, chunks, reservation, include_usage, started)

    async def _sse(
        self,
        tenant_id: str,
        entry: ModelEntry,
        dep: Deployment,
        chunks: AsyncIterator[dict[str, Any]],
        reservation: Reservation,
        include_usage: bool,
        started: float,
    ) -> AsyncIterator[bytes]:
        used: dict[str, Any] = {}
        streamed_chars = 0
        status = 499  # the client went away, unless the stream finishes or fails below
        error: str | None = "the client went away"
        try:
            async for ch in chunks:
                if ch.get("usage"):
                    used = ch["usage"]
                    if not ch.get("choices") and not include_usage:
                        continue
                for choice in ch.get("choices") or ():
                    streamed_chars += len((choice.get("delta") or {}).get("content") or "")
                yield b"data: " + wire.dumps(ch) + b"\n\n"
            status, error = 200, None
            yield b"data: [DONE]\n\n"
        except ServiceError as exc:
            status, error = exc.status, exc.detail
            body = {"error": {"message": exc.detail, "type": "upstream_error", "param": None, "code": exc.slug}}
            yield b"data: " + wire.dumps(body) + b"\n\n"
        finally:
            prompt = int(used.get("prompt_tokens") or wire.estimate_prompt_tokens({"messages": []}))
            completion = int(used.get("completion_tokens") or (streamed_chars + 3) // 4)
            self._record(
                tenant_id=tenant_id,
                model=entry.name,
                dep=dep,
                started=started,
                status=status,
                prompt=prompt,
                completion=completion,
                reservation=reservation,
                stream=True,
                error=error,
            )

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
        texts = _texts(request.input)
        entry = await self._entry(tenant_id, request.model or LOCAL_EMBEDDING_MODEL, "embeddings")
        estimate = sum(wire.estimate_text_tokens(t) for t in texts)
        cost = max(d.cost(estimate, 0) for d in entry.deployments)
        reservation = await self.limiter.admit(tenant_id=tenant_id, model=entry.name, tokens=estimate, cost=cost)
        try:
            vectors, tokens, dep = await self.router.embed(entry, texts, request.model_dump(exclude_none=True))
        except ServiceError as exc:
            self._record(
                tenant_id=tenant_id,
                model=entry.name,
                dep=None,
                started=started,
                status=exc.status,
                reservation=reservation,
                error=exc.detail,
            )
            raise
        tokens = tokens or estimate
        if dep.provider == "local" and request.dimensions not in (None, DIMENSIONS):
            vectors = [_resize(v, request.dimensions or DIMENSIONS) for v in vectors]
        self._record(
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
        encode = _base64 if request.encoding_format == "base64" else (lambda v: v)
        return {
            "object": "list",
            "model": model,
            "data": [{"object": "embedding", "index": i, "embedding": encode(v)} for i, v in enumerate(vectors)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    async def embed_texts(self, *, tenant_id: str, texts: list[str], model: str | None = None) -> list[list[float]]:
        if not texts:
            return []
        vectors, _, _ = await self._embed(tenant_id, EmbeddingsIn(model=model, input=list(texts)))
        return vectors

    # ---- usage and policy -------------------------------------------------------------------------------

    async def usage(self, *, tenant_id: str, query: UsageQuery) -> UsageList:
        until = query.until or datetime.now(UTC).date()
        since = query.since or until - timedelta(days=30)
        if since > until:
            return UsageList(data=[], next_cursor=None)  # an empty range, like any range without usage
        after = decode_cursor(query.cursor)
        rows = await self.store.list_usage(
            tenant_id=tenant_id, since=since, until=until, after=after, limit=query.limit + 1
        )
        items = [UsageRow(**r) for r in rows[: query.limit]]
        more = len(rows) > query.limit
        return UsageList(
            data=items,
            next_cursor=_cursor(items[-1]) if more else None,
        )

    async def get_policy(self, *, tenant_id: str) -> PolicyPublic:
        await self.store.require_tenant(tenant_id=tenant_id)
        return _policy(tenant_id, await self.store.get_limits(tenant_id=tenant_id))

    async def update_policy(self, *, tenant_id: str, policy: PolicyIn) -> PolicyPublic:
        await self.store.require_tenant(tenant_id=tenant_id)
        return _policy(tenant_id, await self.store.update_policy(tenant_id=tenant_id, policy=policy))


def _cursor(row: UsageRow) -> str:
    # The store's paging key: "<day>~<hex of the model name>" (any model name fits the cursor alphabet).
    return encode_cursor(f"{row.day.isoformat()}~{row.model.encode()[:90].hex()}")


def _policy(tenant_id: str, row: dict[str, Any]) -> PolicyPublic:
    this_month = row.get("budget_period") is not None and row.get("budget_period") == row.get("this_month")
    return PolicyPublic(
        tenant_id=tenant_id,
        allowed_models=row.get("allowed_models"),
        rpm=row.get("rpm"),
        tpm=row.get("tpm"),
        monthly_budget_usd=row.get("monthly_budget_usd"),
        spent_usd_this_month=float(row.get("period_spent_usd") or 0.0) if this_month else 0.0,
    )


def _usage(result: dict[str, Any]) -> Usage:
    u = result.get("usage") or {}
    p, c = int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0)
    return Usage(prompt_tokens=p, completion_tokens=c, total_tokens=p + c)


def _texts(value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not value or not all(isinstance(v, str) for v in value):
        raise InvalidInput("`input` must be a non-empty string or a list of strings (token arrays are not accepted)")
    if any(not v for v in value):
        raise InvalidInput("`input` must not contain empty strings")
    if len(value) > 2048:
        raise InvalidInput(f"`input` has {len(value)} items; send at most 2048 per request")
    return list(value)


def _resize(vector: list[float], size: int) -> list[float]:
    """Shortened (and re-normalised) like OpenAI's `dimensions`, or zero-padded, which keeps every cosine."""
    if size >= len(vector):
        return vector + [0.0] * (size - len(vector))
    head = vector[:size]
    norm = sum(x * x for x in head) ** 0.5 or 1.0
    return [x / norm for x in head]


def _base64(vector: list[float]) -> str:
    import numpy as np

    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
