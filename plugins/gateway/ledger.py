"""The usage ledger: every gateway call's usage is written, and its reservation settled, before the caller's
answer goes out.

`record` waits for a group commit (`app.batching.Batcher`): the writer starts as soon as a record arrives, and
records arriving meanwhile share the next write, so concurrent answers wait about one database round trip for
one multi-row statement that inserts the ledger rows and settles their reservations in the same transaction.
A replica killed at any moment has therefore lost nothing it acknowledged, and leaves no reservation of an
acknowledged call unsettled. With the Redis limiter the settlements go to Redis after the rows commit, through
a fire-and-forget flusher of their own (a replica killed between the two leaves that minute's reservation to
expire with its window).

A row the database refuses for its data is isolated from its batch and written again with its text scrubbed
(ASCII escapes, no NUL, counts clamped), so one bad row never stops usage recording and its tokens still count.
When the database cannot take the rows, the batch goes back and is retried with backoff; the buffer is bounded
(`max_pending`) and a caller waits at most `wait_seconds` (what the caller then answers is `metering`'s call).
`record_nowait` is for paths that answer nobody (a cancelled call, a client that went away).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace

from app.batching import Batcher
from plugins.gateway.limits import Limiter
from plugins.gateway.store import GatewayStore, Settlement, UsageEntry, rejects_row

_INT32 = 2**31 - 1
log = logging.getLogger("faas.gateway.ledger")


@dataclass(frozen=True, slots=True)
class Usage:
    """One call's ledger row and the settlement of its reservation (None: nothing was reserved)."""

    entry: UsageEntry
    settlement: Settlement | None = None


def _ascii(text: str | None) -> str | None:
    if text is None:
        return None
    return text.replace("\x00", "").encode("ascii", "backslashreplace").decode("ascii")


def _count(n: int) -> int:
    return max(0, min(int(n), _INT32))


def _amount(x: float) -> float:
    return x if math.isfinite(x) else 0.0


def scrubbed(usage: Usage, exc: Exception) -> Usage | None:
    """The same usage in a form any PostgreSQL text and integer column takes (None when it already was)."""
    e = usage.entry
    clean = replace(
        e,
        request_id=_ascii(e.request_id),
        model=_ascii(e.model) or "",
        deployment=_ascii(e.deployment),
        provider=_ascii(e.provider),
        prompt_tokens=_count(e.prompt_tokens),
        completion_tokens=_count(e.completion_tokens),
        cost_usd=_amount(e.cost_usd),
        latency_ms=_amount(e.latency_ms),
        status=_count(e.status),
        error=_ascii(e.error),
    )
    return None if clean == e else Usage(clean, usage.settlement)


class UsageLedger:
    def __init__(
        self,
        store: GatewayStore,
        limiter: Limiter,
        *,
        wait_seconds: float = 5.0,
        max_batch: int = 500,
        max_pending: int = 20_000,
    ) -> None:
        self._store = store
        self._limiter = limiter
        self.wait_seconds = wait_seconds
        self._rows: Batcher[Usage] = Batcher(
            self._write,
            name="gateway-ledger",
            max_batch=max_batch,
            max_pending=max_pending,
            isolate=rejects_row,
            reject=scrubbed,
        )
        self._settlements: Batcher[Settlement] | None = None
        if not limiter.settles_in_database:
            self._settlements = Batcher(
                self._settle_elsewhere, name="gateway-settlements", max_batch=max_batch, max_pending=max_pending
            )

    async def record(self, usage: Usage) -> None:
        """Return once `usage` is committed; `NotWritten` when it was not within `wait_seconds`."""
        await self._rows.submit(usage, within=self.wait_seconds)

    def record_nowait(self, usage: Usage) -> None:
        self._rows.add(usage)

    async def flush(self) -> None:
        await self._rows.flush()

    async def _write(self, batch: list[Usage]) -> None:
        settlements = [u.settlement for u in batch if u.settlement is not None]
        entries = [u.entry for u in batch]
        if self._settlements is None:
            await self._store.write_usage(entries, settlements)
            return
        await self._store.insert_usage(entries)
        for s in settlements:
            self._settlements.add(s)

    async def _settle_elsewhere(self, batch: list[Settlement]) -> list[Settlement]:
        """Settle tenant by tenant; a tenant whose settlement fails is returned, to be retried alone."""
        by_tenant: dict[str, list[Settlement]] = {}
        for s in batch:
            by_tenant.setdefault(s.tenant_id, []).append(s)
        failed: list[Settlement] = []
        for items in by_tenant.values():
            try:
                await self._limiter.settle(items)
            except Exception:
                log.warning("settling %d reservation(s) failed; retrying", len(items), exc_info=True)
                failed.extend(items)
        return failed

    def start(self) -> None:
        self._rows.start()
        if self._settlements is not None:
            self._settlements.start()

    async def stop(self) -> None:
        await self._rows.stop()
        if self._settlements is not None:
            await self._settlements.stop()
