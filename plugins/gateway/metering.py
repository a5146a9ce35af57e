"""Metering one gateway call: reserving the tenant's tokens and cost before it, recording its outcome after it.

`Meter.reserve_chat` estimates a chat call's tokens (prompt estimate + `max_tokens`) and worst-case cost over the
model's deployments and admits it against the tenant's limits; `Meter.record` appends the usage entry to the
ledger together with the settlement of the reservation (real usage minus reserved), both written off the hot
path. A cache hit is recorded at no cost.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from app.context import current_request_id
from app.errors import ServiceError, operator_detail
from plugins.gateway import wire
from plugins.gateway.catalog import Deployment, ModelEntry
from plugins.gateway.ledger import UsageLedger
from plugins.gateway.limits import Limiter, Reservation
from plugins.gateway.store import UsageEntry

_MAX_TEXT = 500


def _clean(text: str | None, limit: int = _MAX_TEXT) -> str | None:
    """Text PostgreSQL will store: no NUL, valid UTF-8 (a lone surrogate becomes "?"), at most `limit` chars.

    Error texts are often quoted from a provider; one the database rejects would otherwise spoil a ledger batch.
    """
    if text is None:
        return None
    return text.replace("\x00", "").encode("utf-8", errors="replace").decode("utf-8")[:limit]


class Meter:
    def __init__(self, *, limiter: Limiter, ledger: UsageLedger, default_max_tokens: int = 1024) -> None:
        self.limiter = limiter
        self.ledger = ledger
        self.default_max_tokens = default_max_tokens

    async def reserve(self, tenant_id: str, entry: ModelEntry, *, tokens: int, cost: float) -> Reservation:
        return await self.limiter.admit(tenant_id=tenant_id, model=entry.name, tokens=tokens, cost=cost)

    async def reserve_chat(self, tenant_id: str, entry: ModelEntry, body: dict[str, Any]) -> Reservation:
        out = body.get("max_completion_tokens") or body.get("max_tokens") or self.default_max_tokens
        prompt = wire.estimate_prompt_tokens(body)
        cost = max(d.cost(prompt, out) for d in entry.deployments)
        return await self.reserve(tenant_id, entry, tokens=prompt + out, cost=cost)

    async def reserve_embeddings(self, tenant_id: str, entry: ModelEntry, texts: list[str]) -> tuple[Reservation, int]:
        """The reservation and the token estimate it was made for (used when the provider reports none)."""
        estimate = sum(wire.estimate_text_tokens(t) for t in texts)
        cost = max(d.cost(estimate, 0) for d in entry.deployments)
        return await self.reserve(tenant_id, entry, tokens=estimate, cost=cost), estimate

    @contextmanager
    def failures(
        self, *, tenant_id: str, model: str, started: float, reservation: Reservation | None, stream: bool = False
    ) -> Iterator[None]:
        """Record a provider call that raised (its status and reason, no tokens, reservation settled), re-raise."""
        try:
            yield
        except ServiceError as exc:
            self.record(
                tenant_id=tenant_id,
                model=model,
                dep=None,
                started=started,
                status=exc.status,
                reservation=reservation,
                stream=stream,
                error=operator_detail(exc),
            )
            raise

    def record(
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
            model=_clean(model, 200) or "",
            deployment=_clean(dep.id, 200) if dep else None,
            provider=_clean(dep.provider, 200) if dep else None,
            prompt_tokens=prompt,
            completion_tokens=completion,
            cost_usd=cost,
            latency_ms=(time.perf_counter() - started) * 1000,
            cache_hit=cache_hit,
            stream=stream,
            status=status,
            error=_clean(error) or None,
        )
        self.ledger.record(entry, reservation.settle(prompt + completion, cost) if reservation else None)
