"""The breaker: open/closed decisions from aiobreaker, and each of aiobreaker's known gaps closed in app/breaker.py."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from datetime import datetime

import aiobreaker.circuitbreaker
import aiobreaker.state
import pytest

from app.breaker import Breaker, CircuitOpen
from app.errors import NotFound, RateLimited, ServiceError, UpstreamFailed, error_from_problem


class Boom(Exception):
    pass


def recorder() -> tuple[list[tuple[str, str]], Breaker]:
    seen: list[tuple[str, str]] = []
    b = Breaker("up", fail_max=3, reset_timeout=0.05, on_transition=lambda n, o, w: seen.append((o, w)))
    return seen, b


async def fail(b: Breaker, exc: Exception | None = None) -> None:
    with pytest.raises(type(exc) if exc else Boom):
        async with b.guard():
            raise exc or Boom()


def state(b: Breaker) -> str:
    """Read afresh each time (mypy would otherwise keep the state an earlier assert narrowed it to)."""
    return b.state


async def test_opens_after_fail_max_consecutive_failures_and_fails_fast() -> None:
    seen, b = recorder()
    for _ in range(2):
        await fail(b)
    assert state(b) == "closed"
    await fail(b)  # the tripping call raises its own error, not aiobreaker's CircuitBreakerError
    assert state(b) == "open" and seen == [("closed", "open")]
    ran = False
    with pytest.raises(CircuitOpen) as info:
        async with b.guard():
            ran = True
    assert not ran
    assert info.value.status == 503 and info.value.headers["Retry-After"] == "1"
    assert 0 < b.retry_after() <= 0.05


async def test_success_resets_the_consecutive_count() -> None:
    _, b = recorder()
    for _ in range(5):
        await fail(b)
        await fail(b)
        async with b.guard():
            pass
    assert state(b) == "closed"


async def test_4xx_is_neither_failure_nor_success() -> None:
    # aiobreaker would count an excluded exception as a success and reset the count: here it is neutral.
    seen, b = recorder()
    await fail(b)
    await fail(b)
    for exc in (NotFound("x"), RateLimited("slow down")):
        await fail(b, exc)
    assert state(b) == "closed"
    await fail(b, UpstreamFailed("5xx counts"))
    assert state(b) == "open" and seen == [("closed", "open")]


async def test_half_open_admits_exactly_one_trial_and_its_success_closes() -> None:
    seen, b = recorder()
    for _ in range(3):
        await fail(b)
    await asyncio.sleep(0.06)
    release = asyncio.Event()
    entered = 0

    async def caller() -> str:
        nonlocal entered
        try:
            async with b.guard():
                entered += 1
                await release.wait()
        except CircuitOpen:
            return "fast"
        return "trial"

    tasks = [asyncio.create_task(caller()) for _ in range(10)]
    await asyncio.sleep(0.01)
    assert state(b) == "half-open" and entered == 1
    release.set()
    results = await asyncio.gather(*tasks)
    assert results.count("trial") == 1 and results.count("fast") == 9
    assert state(b) == "closed"
    assert seen == [("closed", "open"), ("open", "half-open"), ("half-open", "closed")]


async def test_failed_trial_reopens_for_a_full_timeout() -> None:
    seen, b = recorder()
    for _ in range(3):
        await fail(b)
    await asyncio.sleep(0.06)
    await fail(b)
    assert state(b) == "open" and b.retry_after() > 0.03
    assert seen == [("closed", "open"), ("open", "half-open"), ("half-open", "open")]


async def test_4xx_answer_to_the_trial_closes() -> None:
    _, b = recorder()
    for _ in range(3):
        await fail(b)
    await asyncio.sleep(0.06)
    await fail(b, NotFound("the upstream answered"))
    assert state(b) == "closed"


async def test_cancelled_trial_frees_the_slot() -> None:
    _, b = recorder()
    for _ in range(3):
        await fail(b)
    await asyncio.sleep(0.06)

    async def hang() -> None:
        async with b.guard():
            await asyncio.sleep(10)

    task = asyncio.create_task(hang())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert state(b) == "half-open"
    async with b.guard():
        pass
    assert state(b) == "closed"


async def test_concurrent_failures_report_one_transition() -> None:
    # aiobreaker fires OPEN->OPEN for every in-flight call that fails after the breaker opened.
    seen, b = recorder()
    gate = asyncio.Event()

    async def failing() -> None:
        async with b.guard():
            await gate.wait()
            raise Boom()

    tasks = [asyncio.create_task(failing()) for _ in range(8)]
    await asyncio.sleep(0.01)
    gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, Boom) for r in results)
    assert seen == [("closed", "open")]


async def test_stale_success_does_not_close_a_half_open_breaker() -> None:
    _, b = recorder()
    gate = asyncio.Event()

    async def slow_ok() -> None:
        async with b.guard():
            await gate.wait()

    slow = asyncio.create_task(slow_ok())
    await asyncio.sleep(0)
    for _ in range(3):
        await fail(b)
    await asyncio.sleep(0.06)
    trial_gate = asyncio.Event()

    async def trial() -> None:
        async with b.guard():
            await trial_gate.wait()
            raise Boom()

    t = asyncio.create_task(trial())
    await asyncio.sleep(0.01)
    gate.set()
    await slow  # admitted while closed, finishes during the trial: ignored
    assert state(b) == "half-open"
    trial_gate.set()
    with pytest.raises(Boom):
        await t
    assert state(b) == "open"


async def test_record_failure_inside_the_block_counts_once() -> None:
    seen, b = recorder()
    for _ in range(3):
        async with b.guard():
            b.record_failure()  # e.g. a 503 response that did not raise
    assert state(b) == "open" and seen == [("closed", "open")]


async def test_abstain_decides_nothing_and_frees_the_trial() -> None:
    _, b = recorder()
    for _ in range(2):
        await fail(b)
    async with b.guard():
        b.abstain()  # e.g. the caller's own deadline cut the call short
    await fail(b)
    assert state(b) == "open"  # the count was not reset by the abstention
    await asyncio.sleep(0.06)
    with pytest.raises(Boom):
        async with b.guard():
            b.abstain()
            raise Boom()  # an abstained call's error decides nothing either
    assert state(b) == "half-open"
    async with b.guard():  # the slot was freed: the next caller is the trial
        pass
    assert state(b) == "closed"


@pytest.fixture
def non_utc_zone() -> Iterator[None]:
    old = os.environ.get("TZ")
    os.environ["TZ"] = "Asia/Kolkata"  # UTC+5:30: aiobreaker's local/UTC mix is 5.5 hours off here
    time.tzset()
    yield
    if old is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = old
    time.tzset()


async def test_retry_after_is_right_off_utc_and_after_the_timeout(non_utc_zone: None) -> None:
    offset = datetime.now().astimezone().utcoffset()
    assert offset is not None and offset.total_seconds() == 5.5 * 3600
    b = Breaker("up", fail_max=1, reset_timeout=0.2)
    await fail(b)
    assert 0.1 < b.retry_after() <= 0.2
    with pytest.raises(CircuitOpen) as info:
        async with b.guard():
            pass
    assert info.value.headers["Retry-After"] == "1"
    await asyncio.sleep(0.21)
    assert b.retry_after() == 0.0  # aiobreaker's time_until_open raises TypeError here
    async with b.guard():
        pass
    assert state(b) == "closed"


class _NoUtcnow(datetime):
    @classmethod
    def utcnow(cls) -> datetime:  # type: ignore[override]
        raise AssertionError("datetime.utcnow() is deprecated (warns on 3.12) and must not be reached")


async def test_full_cycle_never_calls_utcnow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aiobreaker.circuitbreaker, "datetime", _NoUtcnow)
    monkeypatch.setattr(aiobreaker.state, "datetime", _NoUtcnow)
    seen, b = recorder()
    for _ in range(3):
        await fail(b)
    with pytest.raises(CircuitOpen):
        async with b.guard():
            pass
    await asyncio.sleep(0.06)
    await fail(b)
    await asyncio.sleep(0.06)
    async with b.guard():
        pass
    assert seen == [
        ("closed", "open"),
        ("open", "half-open"),
        ("half-open", "open"),
        ("open", "half-open"),
        ("half-open", "closed"),
    ]


def test_circuit_open_crosses_the_wire_as_itself() -> None:
    err = CircuitOpen("down", retry_after=2.2)
    again = error_from_problem(503, err.to_problem(), {"Retry-After": err.headers["Retry-After"]})
    assert type(again) is CircuitOpen and again.headers["Retry-After"] == "3"
    assert isinstance(again, ServiceError) and again.status == 503


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError):
        Breaker("x", fail_max=0)
