"""Choosing a deployment for a call, with fallbacks and one circuit breaker per deployment.

The first deployment is drawn by weight, the rest follow by weight as fallbacks. A deployment that answers
429, 5xx or times out, or whose breaker is open, hands the call to the next one; any other error (the request
itself is wrong) goes back to the client at once. There is one attempt per deployment and no other retry
loop. A stream may fall back only until its first chunk: after that a failure ends the stream.

Every error leaves the router through `public_error`: the tenant learns the public model, what it can do and the
request id; the deployment's id, the provider's model name and the provider's own words (an operator's org id in
a 429, a non-JSON body) go to the log, with the request id, for the operator.
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

from app.breaker import Breaker, CircuitOpen
from app.errors import ServiceError, UpstreamFailed, error_class_for, with_request_id
from plugins.gateway.catalog import Deployment, ModelEntry
from plugins.gateway.wire import ChatProvider, EmbeddingProvider, choices_wanted, fan_out, fan_out_stream

log = logging.getLogger("faas.gateway.router")


def falls_back(exc: ServiceError) -> bool:
    """429, any 5xx (timeouts and open breakers included): another deployment may do better."""
    return exc.status == 429 or exc.status >= 500


def _reason(exc: ServiceError) -> str:
    if isinstance(exc, CircuitOpen):
        return "its provider is failing; retry shortly"
    if exc.extra.get("upstream_status") in (401, 403):
        return "the provider refused the gateway's credentials for this model; tell your operator"
    if exc.status == 429:
        return "its provider is rate limiting; retry after the time in Retry-After"
    if exc.status == 504:
        return "its provider did not answer in time; retry"
    if exc.status >= 500:
        return "its provider failed; retry, or use another model"
    if exc.status == 404:
        return "its provider does not serve it now; tell your operator"
    param = exc.extra.get("param")
    return f"its provider rejected the request; check {f'`{param}`' if param else 'its parameters'}"


# What a tenant may see of an upstream error's extensions: identifiers, never the provider's words. `error_type` is
# an OpenAI-style error `type` (`invalid_request_error`, `insufficient_quota`...), which the OpenAI routes show.
PUBLIC_EXTRA = ("upstream_status", "code", "param", "error_type")


def public_error(model: str, exc: ServiceError) -> ServiceError:
    """What the tenant sees of a deployment's failure: its class, status and retry hint, a message naming the public
    model and the request id; of its extensions only the provider's status, `code` and `param` survive. Raise it
    `from exc`: the operator's records (the usage ledger) keep the original words (`app.errors.operator_detail`)."""
    log.warning("model %s: %s %s %s", model, exc.slug, exc.detail, exc.extra or "")
    extra = {k: v for k, v in exc.extra.items() if k in PUBLIC_EXTRA}
    retry = {k: v for k, v in exc.headers.items() if k.lower() == "retry-after"}
    cls = error_class_for(exc.type_uri(), exc.status)
    # A field the gateway itself refused to translate: its words are the gateway's, and say what to change.
    reason = exc.detail if exc.extra.get("unsupported") else _reason(exc)
    return cls(with_request_id(f"model {model}: {reason}"), extra=extra, headers=retry)


class Router:
    def __init__(
        self,
        *,
        chat: dict[str, ChatProvider],
        embeddings: dict[str, EmbeddingProvider],
        fail_max: int = 5,
        reset_timeout: float = 30.0,
        on_transition: Callable[[str, str, str], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._chat = chat
        self._embeddings = embeddings
        self._fail_max = fail_max
        self._reset_timeout = reset_timeout
        self._on_transition = on_transition
        # Breakers are per replica by nature: each replica sees its own failures.
        self._breakers: dict[str, Breaker] = {}
        self._rng = rng or random.Random()

    def breaker(self, dep: Deployment) -> Breaker:
        b = self._breakers.get(dep.id)
        if b is None:
            b = self._breakers[dep.id] = Breaker(
                f"gateway deployment {dep.id}",
                fail_max=self._fail_max,
                reset_timeout=self._reset_timeout,
                on_transition=self._on_transition,
            )
        return b

    def breaker_states(self) -> dict[str, str]:
        return {k: b.state for k, b in self._breakers.items()}

    def order(self, entry: ModelEntry) -> list[Deployment]:
        deps = list(entry.deployments)
        if len(deps) == 1:
            return deps
        first = self._rng.choices(deps, weights=[d.weight for d in deps])[0]
        rest = sorted((d for d in deps if d is not first), key=lambda d: -d.weight)
        return [first, *rest]

    def _native_n(self, dep: Deployment, body: dict[str, Any]) -> bool:
        return choices_wanted(body) == 1 or bool(getattr(self._chat[dep.provider], "native_n", False))

    async def _one_chat(self, dep: Deployment, body: dict[str, Any]) -> dict[str, Any]:
        provider = self._chat[dep.provider]
        if self._native_n(dep, body):
            return await provider.chat(dep, body)
        one = {**body, "n": 1}
        return await fan_out(lambda: provider.chat(dep, one), choices_wanted(body))

    def _one_stream(self, dep: Deployment, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        provider = self._chat[dep.provider]
        if self._native_n(dep, body):
            return provider.stream(dep, body)
        one = {**body, "n": 1}
        return fan_out_stream([provider.stream(dep, one) for _ in range(choices_wanted(body))])

    @staticmethod
    def _exhausted(entry: ModelEntry, errors: list[ServiceError]) -> ServiceError:
        # Every deployment was rate limited: the client should wait, as the last provider said.
        last = errors[-1]
        if len(errors) > 1 and not all(e.status == 429 for e in errors):
            log.warning("model %s: every deployment failed", entry.name)
        error = public_error(entry.name, last)
        error.__cause__ = last
        return error

    async def chat(self, entry: ModelEntry, body: dict[str, Any]) -> tuple[dict[str, Any], Deployment]:
        errors: list[ServiceError] = []
        for dep in self.order(entry):
            try:
                async with self.breaker(dep).guard():
                    result = await self._one_chat(dep, body)
                return result, dep
            except ServiceError as exc:
                if not falls_back(exc):
                    raise public_error(entry.name, exc) from exc
                errors.append(exc)
        raise self._exhausted(entry, errors)

    async def stream(self, entry: ModelEntry, body: dict[str, Any]) -> tuple[Deployment, AsyncIterator[dict[str, Any]]]:
        """The deployment that produced a first chunk, and the whole stream (that chunk included)."""
        errors: list[ServiceError] = []
        for dep in self.order(entry):
            breaker = self.breaker(dep)
            chunks = self._one_stream(dep, body)
            try:
                async with breaker.guard():
                    try:
                        first = await anext(chunks)
                    except StopAsyncIteration:
                        raise UpstreamFailed(f"deployment {dep.id} ended the stream without a chunk") from None
            except ServiceError as exc:
                await chunks.aclose()  # type: ignore[attr-defined]
                if not falls_back(exc):
                    raise public_error(entry.name, exc) from exc
                errors.append(exc)
                continue
            return dep, self._rest(entry, first, chunks, breaker)
        raise self._exhausted(entry, errors)

    @staticmethod
    async def _rest(
        entry: ModelEntry, first: dict[str, Any], chunks: AsyncIterator[dict[str, Any]], breaker: Breaker
    ) -> AsyncIterator[dict[str, Any]]:
        try:
            yield first
            async for c in chunks:
                yield c
        except ServiceError as exc:
            if exc.status >= 500:
                breaker.record_failure()
            raise public_error(entry.name, exc) from exc
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]

    async def embed(
        self, entry: ModelEntry, texts: list[str], body: dict[str, Any]
    ) -> tuple[list[list[float]], int, Deployment]:
        errors: list[ServiceError] = []
        for dep in self.order(entry):
            try:
                async with self.breaker(dep).guard():
                    vectors, tokens = await self._embeddings[dep.provider].embed(dep, texts, body)
                return vectors, tokens, dep
            except ServiceError as exc:
                if not falls_back(exc):
                    raise public_error(entry.name, exc) from exc
                errors.append(exc)
        raise self._exhausted(entry, errors)
