"""The usage ledger, written off the hot path: requests append to a buffer, a task flushes it every second.

A flush inserts the entries in one statement and settles their token/cost reservations in another. The
buffer is bounded (a database outage must not eat the replica's memory): past `max_pending` the oldest entries
are dropped and counted in the log. The service's lifespan flushes what is left on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from plugins.gateway.limits import Limiter
from plugins.gateway.store import GatewayStore, Settlement, UsageEntry

log = logging.getLogger("faas.gateway.ledger")


class UsageLedger:
    def __init__(
        self, store: GatewayStore, limiter: Limiter, *, interval: float = 1.0, max_pending: int = 100_000
    ) -> None:
        self._store = store
        self._limiter = limiter
        self._interval = interval
        self._max_pending = max_pending
        self._entries: list[UsageEntry] = []
        self._settlements: list[Settlement] = []
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def record(self, entry: UsageEntry, settlement: Settlement | None = None) -> None:
        self._entries.append(entry)
        if settlement is not None and (settlement.tokens or settlement.cost):
            self._settlements.append(settlement)
        if len(self._entries) > self._max_pending:
            dropped = len(self._entries) - self._max_pending
            del self._entries[:dropped]
            log.error("usage ledger buffer full: dropped %d oldest entries", dropped)

    async def flush(self) -> None:
        async with self._lock:
            entries, self._entries = self._entries, []
            settlements, self._settlements = self._settlements, []
            try:
                if settlements:
                    await self._limiter.settle(settlements)
            except Exception:
                log.exception("settling %d reservations failed; retrying on the next flush", len(settlements))
                self._settlements[:0] = settlements
            try:
                await self._store.insert_usage(entries)
            except Exception:
                log.exception("writing %d usage entries failed; retrying on the next flush", len(entries))
                self._entries[:0] = entries

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.flush()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="gateway-ledger")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()
