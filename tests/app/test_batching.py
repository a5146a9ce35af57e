"""The shared background flusher: group commit, put back and retry, isolating a bad item, the bound on what it
holds, a waiter's bounded wait, and the last write at stop. The store here is a list behind an async callback
that can be told to fail or to hold a write open, which is all a store is to the flusher."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from app.batching import Batcher, NotWritten


class Refused(Exception):
    """The store refuses an item's data (the flusher isolates it)."""


@dataclass
class Store:
    written: list[int] = field(default_factory=list)
    batches: list[list[int]] = field(default_factory=list)
    fail_next: int = 0
    refuse: set[int] = field(default_factory=set)
    gate: asyncio.Event | None = None
    entered: asyncio.Event = field(default_factory=asyncio.Event)

    async def write(self, batch: list[int]) -> None:
        self.batches.append(list(batch))
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        await asyncio.sleep(0.001)  # a round trip: others arrive meanwhile
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("the store is down")
        if self.refuse & set(batch):
            raise Refused(f"refused one of {batch}")
        self.written.extend(batch)


@pytest.fixture
async def store() -> Store:
    return Store()


@pytest.fixture
async def batcher(store: Store) -> AsyncIterator[Batcher[int]]:
    b: Batcher[int] = Batcher(
        store.write,
        name="test",
        max_batch=64,
        max_pending=1000,
        isolate=lambda e: isinstance(e, Refused),
        reject=lambda item, e: -item if item > 0 else None,
        retry_initial=0.01,
        retry_max=0.05,
    )
    b.start()
    yield b
    await b.stop()


async def test_concurrent_waiters_share_writes_and_return_only_once_written(
    batcher: Batcher[int], store: Store
) -> None:
    async def one(i: int) -> None:
        await batcher.submit(i, within=5)
        assert i in store.written  # durable before the caller goes on

    await asyncio.gather(*(one(i) for i in range(200)))
    assert sorted(store.written) == list(range(200))
    assert len(store.batches) < 50  # group commit: far fewer writes than items
    assert max(len(b) for b in store.batches) <= 64


async def test_a_failed_write_goes_back_and_is_retried(batcher: Batcher[int], store: Store) -> None:
    store.fail_next = 3
    await asyncio.gather(*(batcher.submit(i, within=5) for i in range(10)))
    assert sorted(store.written) == list(range(10))
    assert len(store.batches) >= 4


async def test_one_refused_item_does_not_stop_the_others(batcher: Batcher[int], store: Store) -> None:
    store.refuse = {7, -7, 9}
    results = await asyncio.gather(*(batcher.submit(i, within=5) for i in range(12)), return_exceptions=True)
    # 7 and its substitute -7 are refused: dropped, and its waiter told; 9's substitute -9 is written in its place.
    assert sorted(store.written) == sorted([i for i in range(12) if i not in (7, 9)] + [-9])
    assert isinstance(results[7], NotWritten) and results[7].withdrawn
    assert [r for i, r in enumerate(results) if i != 7] == [None] * 11
    assert batcher.dropped == 1


async def test_a_waiter_times_out_and_withdraws_what_no_write_has_taken(batcher: Batcher[int], store: Store) -> None:
    store.gate = asyncio.Event()
    first = asyncio.create_task(batcher.submit(1, within=0.2))
    await store.entered.wait()  # the writer holds 1 in a write that does not finish
    with pytest.raises(NotWritten) as pending:
        await batcher.submit(2, within=0.1)
    assert pending.value.withdrawn
    with pytest.raises(NotWritten) as in_flight:
        await first
    assert not in_flight.value.withdrawn  # its write may still commit
    store.gate.set()
    await batcher.flush()
    assert store.written == [1]  # 2 was withdrawn: never written


async def test_the_buffer_is_bounded_and_drops_are_counted(store: Store) -> None:
    store.fail_next = 10**6  # the store is down for good
    b: Batcher[int] = Batcher(store.write, name="bounded", interval=60, max_batch=10, max_pending=10, stop_tries=1)
    b.start()
    for i in range(25):
        b.add(i)
    assert b.pending == 10 and b.dropped == 15
    waiter = asyncio.create_task(b.submit(99, within=5))
    await asyncio.sleep(0)
    assert b.pending == 10 and b.dropped == 16
    await b.stop()
    with pytest.raises(NotWritten):
        await waiter  # told at stop that it was not written, not left hanging
    assert b.dropped == 26 and store.written == []


async def test_fire_and_forget_items_are_written_periodically_and_at_stop(store: Store) -> None:
    b: Batcher[int] = Batcher(store.write, name="periodic", interval=0.05)
    b.start()
    b.add(1)
    for _ in range(200):
        if store.written:
            break
        await asyncio.sleep(0.01)
    assert store.written == [1]
    b.add(2)
    b.add(3)
    await b.stop()  # before the next period: stop writes them
    assert store.written == [1, 2, 3]


async def test_a_partial_write_puts_back_only_what_it_returns(store: Store) -> None:
    seen: list[list[str]] = []

    async def write(batch: list[str]) -> list[str]:
        seen.append(list(batch))
        return [x for x in batch if x.startswith("bad") and len(seen) < 3]

    b: Batcher[str] = Batcher(write, name="partial", retry_initial=0.01, retry_max=0.02)
    b.start()
    try:
        await asyncio.gather(b.submit("ok", within=5), b.submit("bad", within=5))
    finally:
        await b.stop()
    assert seen[0] == ["ok", "bad"] and seen[1:] == [["bad"], ["bad"]]
