"""The usage ledger, written off the hot path: requests append to a buffer, a task flushes it every second.

A flush settles the entries' token/cost reservations in one statement and inserts the entries in another. The
buffer is bounded (a database outage must not eat the replica's memory): past `max_pending` the oldest entries
are dropped and counted in the log. A batch the database refuses is retried row by row, and only the rows it
rejects for their data are dropped (one bad row must not stop all usage recording). Whatever a flush has not
written when it is interrupted, even by cancellation, goes back in front of the buffer. `stop` lets the
in-flight flush finish, then flushes what is left: usage already acknowledged to a tenant survives a SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from plugins.gateway.limits import Limiter
from plugins.gateway.store import GatewayStore, Settlement, UsageEntry, rejects_row

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
        self._stopping = asyncio.Event()
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
                    try:
                        await self._limiter.settle(settlements)
                    except Exception:
                        log.exception("settling %d reservations failed; retrying on the next flush", len(settlements))
                        self._settlements[:0] = settlements
                    settlements = []
                entries = await self._write(entries)
            except BaseException:
                # Cancelled (or worse) mid-flush: what was not written goes back, for the final flush.
                self._settlements[:0] = settlements
                self._entries[:0] = entries
                raise

    async def _write(self, entries: list[UsageEntry]) -> list[UsageEntry]:
        """Insert the entries; return those still to write (empty unless the database is unavailable)."""
        if not entries:
            return entries
        try:
            await self._store.insert_usage(entries)
            return []
        except Exception as exc:
            if not rejects_row(exc):
                log.exception("writing %d usage entries failed; retrying on the next flush", len(entries))
                self._entries[:0] = entries
                return []
        # One row spoilt the batch: write them one by one and drop only those the database rejects.
        while entries:
            try:
                await self._store.insert_usage(entries[:1])
            except Exception as exc:
                if not rejects_row(exc):
                    log.exception("writing %d usage entries failed; retrying on the next flush", len(entries))
                    self._entries[:0] = entries
                    return []
                log.error("dropping a usage entry the database rejects (%s): %r", exc, entries[0])
            del entries[:1]
        return entries

    async def _run(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval)
            await self.flush()

    def start(self) -> None:
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name="gateway-ledger")

    async def stop(self) -> None:
        # Not `cancel()`: a flush cancelled inside its INSERT would leave the batch's fate to that INSERT.
        self._stopping.set()
        if self._task is not None:
            await self._task
            self._task = None
        await self.flush()
