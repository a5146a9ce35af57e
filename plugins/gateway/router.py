"""Choosing a deployment for a call, with fallbacks and one circuit breaker per deployment.

The first deployment is drawn by weight, the rest follow by weight as fallbacks. A deployment that answers
429, 5xx or times out, or whose breaker is open, hands the call to the next one; any other error (the request
itself is wrong) goes back to the client at once. There is one attempt per deployment and no other retry
loop. A stream may fall back only until its first chunk: after that a failure ends the stream.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from typing import Any

from app.breaker import Breaker
from app.errors import ServiceError, UpstreamFailed
from plugins.gateway.catalog import Deployment, ModelEntry
from plugins.gateway.wire import ChatProvider, EmbeddingProvider


def falls_back(exc: ServiceError) -> bool:
    """429, any 5xx (timeouts and open breakers included): another deployment may do better."""
    return exc.status == 429 or exc.status >= 500


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

    @staticmethod
    def _exhausted(entry: ModelEntry, errors: list[ServiceError]) -> ServiceError:
        if len(errors) == 1:
            return errors[0]
        last = errors[-1]
        # Every deployment was rate limited: the client should wait, as the provider said.
        if all(e.status == 429 for e in errors):
            return last
        tried = "; ".join(e.detail for e in errors)
        return type(last)(f"every deployment of {entry.name} failed: {tried}", extra=last.extra, headers=last.headers)

    async def chat(self, entry: ModelEntry, body: dict[str, Any]) -> tuple[dict[str, Any], Deployment]:
        errors: list[ServiceError] = []
        for dep in self.order(entry):
            try:
                async with self.breaker(dep).guard():
                    result = await self._chat[dep.provider].chat(dep, body)
                return result, dep
            except ServiceError as exc:
                if not falls_back(exc):
                    raise
                errors.append(exc)
        raise self._exhausted(entry, errors)

    async def stream(self, entry: ModelEntry, body: dict[str, Any]) -> tuple[Deployment, AsyncIterator[dict[str, Any]]]:
        """The deployment that produced a first chunk, and the whole stream (that chunk included)."""
        errors: list[ServiceError] = []
        for dep in self.order(entry):
            breaker = self.breaker(dep)
            chunks = self._chat[dep.provider].stream(dep, body)
            try:
                async with breaker.guard():
                    try:
                        first = await anext(chunks)
                    except StopAsyncIteration:
                        raise UpstreamFailed(f"deployment {dep.id} ended the stream without a chunk") from None
            except ServiceError as exc:
                await chunks.aclose()  # type: ignore[attr-defined]
                if not falls_back(exc):
                    raise
                errors.append(exc)
                continue
            return dep, self._rest(first, chunks, breaker)
        raise self._exhausted(entry, errors)

    @staticmethod
    async def _rest(
        first: dict[str, Any], chunks: AsyncIterator[dict[str, Any]], breaker: Breaker
    ) -> AsyncIterator[dict[str, Any]]:
        try:
            yield first
            async for c in chunks:
                yield c
        except ServiceError as exc:
            if exc.status >= 500:
                breaker.record_failure()
            raise
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
                    raise
                errors.append(exc)
        raise self._exhausted(entry, errors)
