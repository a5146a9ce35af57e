"""Metering one gateway call: reserving the tenant's tokens and cost before it, recording its outcome after it.

`Meter.reserve_chat` estimates a chat call's tokens (prompt estimate + the completion limit) and worst-case cost
over the model's deployments and admits it against the tenant's limits; the completion limit it reserved for is
also the one the provider is held to (`completion_limit`). `Meter.record` writes the usage entry together with
the settlement of the reservation (real usage minus reserved) and returns once both are committed: an answer
goes out only after its usage is durable. A cache hit is recorded at no cost.

When the ledger cannot be written in time (`UsageLedger.wait_seconds`), the answer is withheld: the caller gets
503 `usage_not_recorded` with `Retry-After`, never an answer whose usage nobody recorded. The row is then queued
again (bounded, retried with backoff) with status 503 and the tokens and cost the provider did use, so that the
tenant's limits and budget, and the operator's books, still see what was consumed upstream. (If the row was
already in a write that was slow rather than failed, that write may still commit it with status 200.)

Any failure of the provider call settles the reservation and leaves a row: a provider error with its status and
reason, and an interrupted call too (cancelled: 499, or 504 when the caller's deadline passed; an unexpected
exception: 500). Those rows go to the ledger without waiting, since the caller is gone or gets an error anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from app.batching import NotWritten
from app.context import current_deadline, current_request_id
from app.errors import ServiceError, Unavailable, operator_detail
from plugins.gateway import wire
from plugins.gateway.catalog import Deployment, ModelEntry
from plugins.gateway.ledger import Usage, UsageLedger
from plugins.gateway.limits import Limiter, Reservation
from plugins.gateway.store import UsageEntry

_MAX_TEXT = 500
WITHHELD = "the answer was withheld: its usage could not be recorded in time"
log = logging.getLogger("faas.gateway.metering")


def _clean(text: str | None, limit: int = _MAX_TEXT) -> str | None:
    """Text PostgreSQL will store: no NUL, valid UTF-8 (a lone surrogate becomes "?"), at most `limit` chars.

    Error texts are often quoted from a provider; one the database rejects would otherwise spoil a ledger batch.
    """
    if text is None:
        return None
    return text.replace("\x00", "").encode("utf-8", errors="replace").decode("utf-8")[:limit]


def interrupted(exc: BaseException) -> tuple[int, str]:
    """The ledger status and reason of a call that ended with `exc` rather than an answer or a ServiceError."""
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        deadline = current_deadline()
        if deadline is not None and time.monotonic() >= deadline:
            return 504, "the caller's deadline passed"
        return 499, "cancelled: the client went away"
    return 500, f"the gateway failed: {type(exc).__name__}"


class Meter:
    def __init__(self, *, limiter: Limiter, ledger: UsageLedger, default_max_tokens: int = 1024) -> None:
        self.limiter = limiter
        self.ledger = ledger
        self.default_max_tokens = default_max_tokens

    def completion_limit(self, body: dict[str, Any]) -> int:
        """The most completion tokens a chat call may produce: the client's limit, else the gateway default."""
        return int(body.get("max_completion_tokens") or body.get("max_tokens") or self.default_max_tokens)

    async def reserve(self, tenant_id: str, entry: ModelEntry, *, tokens: int, cost: float) -> Reservation:
        return await self.limiter.admit(tenant_id=tenant_id, model=entry.name, tokens=tokens, cost=cost)

    async def reserve_chat(self, tenant_id: str, entry: ModelEntry, body: dict[str, Any]) -> Reservation:
        # Each of `n` choices may use the whole completion limit, and a provider that makes them as `n` calls
        # reads the prompt `n` times.
        n = int(body.get("n") or 1)
        out = self.completion_limit(body) * n
        prompt = wire.estimate_prompt_tokens(body) * n
        cost = max(d.cost(prompt, out) for d in entry.deployments)
        return await self.reserve(tenant_id, entry, tokens=prompt + out, cost=cost)

    async def reserve_embeddings(self, tenant_id: str, entry: ModelEntry, texts: list[str]) -> tuple[Reservation, int]:
        """The reservation and the token estimate it was made for (used when the provider reports none)."""
        estimate = sum(wire.estimate_text_tokens(t) for t in texts)
        cost = max(d.cost(estimate, 0) for d in entry.deployments)
        return await self.reserve(tenant_id, entry, tokens=estimate, cost=cost), estimate

    @asynccontextmanager
    async def failures(
        self, *, tenant_id: str, model: str, started: float, reservation: Reservation | None, stream: bool = False
    ) -> AsyncIterator[None]:
        """Record a provider call that did not answer (no tokens, reservation settled), then re-raise."""
        common: dict[str, Any] = {
            "tenant_id": tenant_id,
            "model": model,
            "dep": None,
            "started": started,
            "reservation": reservation,
            "stream": stream,
        }
        try:
            yield
        except ServiceError as exc:
            with contextlib.suppress(ServiceError):  # the provider's error is the answer, recorded or not
                await self.record(**common, status=exc.status, error=operator_detail(exc))
            raise
        except BaseException as exc:
            # Cancelled (the client left, the caller's deadline passed) or a bug: nobody waits for this row, and
            # under cancellation an await could not be trusted to run, so it is queued without waiting.
            status, reason = interrupted(exc)
            self.ledger.record_nowait(self.usage(**common, status=status, error=reason))
            raise

    def usage(
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
        request_id: str | None = None,
    ) -> Usage:
        cost = dep.cost(prompt, completion) if dep is not None and not cache_hit else 0.0
        entry = UsageEntry(
            tenant_id=tenant_id,
            created_at=datetime.now(UTC),
            request_id=request_id or current_request_id(),
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
        return Usage(entry, reservation.settle(prompt + completion, cost) if reservation else None)

    async def record(self, **kw: Any) -> None:
        """Build the usage (see `usage`) and `commit` it."""
        await self.commit(self.usage(**kw))

    async def commit(self, usage: Usage) -> None:
        """Return once `usage` is durable; raise `Unavailable` (503, `usage_not_recorded`) when it could not be
        written in time, in which case the caller must not hand out the answer it was about to give."""
        try:
            await self.ledger.record(usage)
        except NotWritten as exc:
            if exc.withdrawn:
                # Queued again (it never reached the database): an answer it was for is now withheld; a failure
                # row stays what it was.
                entry = usage.entry
                if entry.status < 400:
                    entry = replace(entry, status=503, error=WITHHELD)
                self.ledger.record_nowait(Usage(entry, usage.settlement))
            else:
                log.warning("usage of request %s not committed in time; answering 503", usage.entry.request_id)
            raise Unavailable(
                "the usage ledger could not record this call in time, so its answer is withheld; retry shortly",
                extra={"code": "usage_not_recorded"},
                headers={"Retry-After": "5"},
            ) from None
