"""Batched writes off the request path: callers add items, one background task writes them in batches.

Two ways in, one writer:

- `add(item)`: fire and forget, for figures where losing the last moment to a crash is acceptable (cache hit
  counters). With `interval` set, the writer wakes that often and writes what accumulated.
- `await submit(item, within=...)`: returns once the batch holding the item has committed, so a caller can
  answer only after its record is durable. Without `interval` the writer starts as soon as an item arrives;
  items that arrive while a write is in flight go together in the next one (a group commit: N concurrent
  callers share one round trip, and a lone caller waits for one write, not for a timer).

`write(batch)` either raises (nothing of the batch was written) or returns the items it could not write yet
(a partial success; None or empty when all were). Items not written go back in front of the buffer and are
retried with exponential backoff and full jitter. An error for which `isolate(exc)` holds blames some item's
data rather than the store: the batch is split in halves until that item is alone, so one bad item never stops
the others; `reject(item, exc)` may then offer a substitute to write once in its place (None drops the item).

The buffer is bounded (`max_pending`): past it the oldest items are dropped, counted in `dropped` and logged,
and their waiters are told. A waiter whose timeout passes withdraws its item when no write has taken it yet
(`NotWritten.withdrawn`), so the caller knows for sure that it will never be written. `stop()` lets the write
in flight finish and writes what is left, with a few bounded tries; nothing is cancelled mid-write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

log = logging.getLogger("faas.batching")

T = TypeVar("T")

_PENDING, _TAKEN, _WITHDRAWN, _DONE = 0, 1, 2, 3


class NotWritten(Exception):
    """A submitted item was not written. `withdrawn`: it never will be (it left the buffer unwritten); otherwise
    a write holding it is still in flight and may yet commit."""

    def __init__(self, message: str, *, withdrawn: bool) -> None:
        super().__init__(message)
        self.withdrawn = withdrawn


class _Slot(Generic[T]):
    __slots__ = ("done", "item", "state")

    def __init__(self, item: T, done: asyncio.Future[str | None] | None) -> None:
        self.item = item
        self.done = done  # result None: written; a string: why it was not (the waiter raises NotWritten)
        self.state = _PENDING


class Batcher(Generic[T]):
    def __init__(
        self,
        write: Callable[[list[T]], Awaitable[Sequence[T] | None]],
        *,
        name: str,
        interval: float = 0.0,
        max_wait: float = 0.0,
        max_batch: int = 500,
        max_pending: int = 100_000,
        isolate: Callable[[Exception], bool] | None = None,
        reject: Callable[[T, Exception], T | None] | None = None,
        retry_initial: float = 0.05,
        retry_max: float = 2.0,
        stop_tries: int = 3,
    ) -> None:
        if max_batch < 1 or max_pending < max_batch:
            raise ValueError("need 1 <= max_batch <= max_pending")
        self.name = name
        self._write = write
        self._interval = interval
        self._max_wait = max_wait
        self._max_batch = max_batch
        self._max_pending = max_pending
        self._isolate = isolate
        self._reject = reject
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._stop_tries = stop_tries
        self._pending: deque[_Slot[T]] = deque()
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._lock = asyncio.Lock()  # one write at a time: the loop's, or a caller's flush()
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        self._failures = 0
        self._flushes: set[asyncio.Future[bool]] = set()
        self.dropped = 0
        self._dropped_unlogged = 0
        self._drop_logged_at = -1e9

    @property
    def pending(self) -> int:
        """Items waiting for a write (withdrawn ones may still be counted until the writer passes them)."""
        return len(self._pending)

    # ---- adding ----------------------------------------------------------------------------------------------

    def add(self, item: T) -> None:
        """Buffer `item` for the next write; never waits, never raises."""
        if self._stopped:
            self._drop(1, "added after stop")
            return
        self._enqueue(_Slot(item, None))

    async def submit(self, item: T, *, within: float | None) -> None:
        """Return once `item` is written; raise `NotWritten` when it was dropped, refused, or not written `within`
        seconds. A caller cancelled while waiting leaves the item to be written all the same."""
        done: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        slot = _Slot(item, done)
        if self._stopped:
            # After stop() nobody else will write it: the caller does, at once, in one try.
            slot.state = _TAKEN
            if not await self._write_slots([slot]):
                self._pending.clear()
                raise NotWritten(f"{self.name}: could not write after shutdown", withdrawn=True)
        else:
            self._enqueue(slot)
        try:
            async with asyncio.timeout(within):
                why = await done
        except TimeoutError:
            withdrawn = slot.state == _PENDING
            if withdrawn:
                slot.state = _WITHDRAWN
            raise NotWritten(f"{self.name}: not written within {within} s", withdrawn=withdrawn) from None
        if why is not None:
            raise NotWritten(f"{self.name}: {why}", withdrawn=True)

    def _enqueue(self, slot: _Slot[T]) -> None:
        self._pending.append(slot)
        if len(self._pending) > self._max_pending:
            self._trim()
        if not self._interval:
            self._wake.set()

    def _trim(self) -> None:
        n = 0
        while len(self._pending) > self._max_pending:
            slot = self._pending.popleft()
            if slot.state == _PENDING:
                n += 1
                self._settle(slot, f"dropped: more than {self._max_pending} items waiting")
        if n:
            self._drop(n, "buffer full")

    def _drop(self, n: int, why: str) -> None:
        self.dropped += n
        self._dropped_unlogged += n
        now = time.monotonic()
        if now - self._drop_logged_at >= 1.0:  # an outage at full rate would otherwise log every request
            log.error("%s: dropped %d item(s) (%s); %d in total", self.name, self._dropped_unlogged, why, self.dropped)
            self._dropped_unlogged, self._drop_logged_at = 0, now

    @staticmethod
    def _settle(slot: _Slot[T], why: str | None) -> None:
        slot.state = _DONE
        if slot.done is not None and not slot.done.done():
            slot.done.set_result(why)

    # ---- writing ---------------------------------------------------------------------------------------------

    def _take(self) -> list[_Slot[T]]:
        batch: list[_Slot[T]] = []
        while self._pending and len(batch) < self._max_batch:
            slot = self._pending.popleft()
            if slot.state == _PENDING:
                slot.state = _TAKEN
                batch.append(slot)
        return batch

    def _put_back(self, slots: list[_Slot[T]]) -> None:
        for slot in slots:
            slot.state = _PENDING
        self._pending.extendleft(reversed(slots))
        if len(self._pending) > self._max_pending:
            self._trim()

    async def _drain(self) -> bool:
        """Write batches until the buffer is empty; False when a write failed (its items are back in front)."""
        async with self._lock:
            while self._pending:
                batch = self._take()
                if batch and not await self._write_slots(batch):
                    return False
            return True

    async def _write_slots(self, slots: list[_Slot[T]]) -> bool:
        try:
            left = await self._attempt(slots)
        except BaseException:
            # Cancelled mid-write (only a caller's own inline write can be): the items go back, unresolved.
            self._put_back([s for s in slots if s.state == _TAKEN])
            raise
        if left:
            self._failures += 1
            self._put_back(left)
            return False
        self._failures = 0
        return True

    async def _attempt(self, slots: list[_Slot[T]]) -> list[_Slot[T]]:
        """Write `slots`; resolve those written or given up; return those to retry."""
        try:
            rest = await self._write([s.item for s in slots])
        except Exception as exc:
            if self._isolate is not None and self._isolate(exc):
                return await self._split(slots, exc)
            log.warning("%s: writing %d item(s) failed; retrying", self.name, len(slots), exc_info=True)
            return slots
        unwritten = {id(item) for item in rest or ()}  # returned items are matched by identity
        retry: list[_Slot[T]] = []
        for slot in slots:
            if id(slot.item) in unwritten:
                retry.append(slot)
            else:
                self._settle(slot, None)
        return retry

    async def _split(self, slots: list[_Slot[T]], exc: Exception) -> list[_Slot[T]]:
        if len(slots) > 1:
            half = len(slots) // 2
            return await self._attempt(slots[:half]) + await self._attempt(slots[half:])
        slot = slots[0]
        substitute = self._reject(slot.item, exc) if self._reject is not None else None
        if substitute is not None:
            try:
                rest = await self._write([substitute])
            except Exception as again:
                if not (self._isolate is not None and self._isolate(again)):
                    slot.item = substitute  # the store failed, not the data: retry the substitute later
                    return [slot]
                exc = again
            else:
                if not rest:
                    self._settle(slot, None)
                    return []
                slot.item = substitute
                return [slot]
        log.error("%s: dropping an item the store refuses (%s): %r", self.name, exc, slot.item)
        self._drop(1, "refused by the store")
        self._settle(slot, f"refused by the store: {exc}")
        return []

    def _backoff(self) -> float:
        ceiling = min(self._retry_max, self._retry_initial * 2 ** min(self._failures, 30))
        return random.uniform(ceiling / 2, ceiling)

    # ---- running ---------------------------------------------------------------------------------------------

    async def flush(self) -> bool:
        """Write everything buffered now, after the write in flight; True when the buffer was emptied. Never raises
        for a failed write (the items stay buffered). It completes even when the caller is cancelled."""
        task = asyncio.ensure_future(self._drain())
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)
        return await asyncio.shield(task)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()

    async def _run(self) -> None:
        while not self._stopping.is_set():
            if self._interval:
                await self._pause(self._interval)
            else:
                if not self._pending:
                    self._wake.clear()
                    await self._wake.wait()
                if self._max_wait and len(self._pending) < self._max_batch:
                    await self._pause(self._max_wait)
            if self._stopping.is_set():
                break
            if not await self._drain():
                await self._pause(self._backoff())

    def start(self) -> None:
        self._stopping.clear()
        self._stopped = False
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        """Let the write in flight finish, then write what is left (a few tries, backing off between them)."""
        self._stopping.set()
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        for attempt in range(self._stop_tries):
            if await self._drain():
                break
            if attempt + 1 < self._stop_tries:
                await asyncio.sleep(self._backoff())
        self._stopped = True
        lost = [s for s in self._pending if s.state == _PENDING]
        self._pending.clear()
        for slot in lost:
            self._settle(slot, "not written before shutdown")
        if lost:
            self._drop(len(lost), "not written before shutdown")
