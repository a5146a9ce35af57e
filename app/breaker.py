"""A circuit breaker for one upstream (a remote plugin deployment or an LLM provider deployment).

`Breaker` is built on aiobreaker, which keeps the failure count and makes the closed→open and half-open→open/closed
decisions. Its known gaps are closed here: the open→half-open timing runs on our own monotonic clock (aiobreaker
mixes `datetime.utcnow()` with local `datetime.now()`, which is wrong off UTC, raises `TypeError` once the timeout
has passed, and warns on Python 3.12); half-open admits exactly one trial caller (aiobreaker lets every concurrent
caller through); a 4xx-type `ServiceError` leaves the failure count alone (aiobreaker counts an excluded exception
as a success and resets the count), though a 4xx answer to a half-open trial does close it (the upstream answered);
the call that trips the breaker re-raises its own error instead
of `CircuitBreakerError`; outcomes of calls admitted before a transition are ignored (no spurious OPEN→OPEN); and
transitions are reported once each as `(name, old, new)`. Everything runs on one event loop: the admission decision
has no `await` inside it, so it is atomic without a lock.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from aiobreaker import CircuitBreaker, CircuitBreakerError, CircuitBreakerListener, CircuitBreakerState

from app.errors import ServiceError, Unavailable

State = Literal["closed", "open", "half-open"]
_NAMES: dict[CircuitBreakerState, State] = {
    CircuitBreakerState.CLOSED: "closed",
    CircuitBreakerState.OPEN: "open",
    CircuitBreakerState.HALF_OPEN: "half-open",
}


class CircuitOpen(Unavailable):
    """The breaker is open: the call failed at once, without touching the upstream."""

    slug, title = "circuit-open", "Upstream circuit open"

    def __init__(self, detail: str | None = None, *, retry_after: float | None = None, **kw: Any) -> None:
        headers = dict(kw.pop("headers", None) or {})
        if retry_after is not None:
            headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
        super().__init__(detail, headers=headers, **kw)


class _Failure(Exception):
    """Raised through aiobreaker to record a failure."""


def _succeed() -> None:
    return None


def _fail() -> None:
    raise _Failure


class _Core(CircuitBreaker):  # type: ignore[misc]
    """aiobreaker's breaker with its clock taken away: `open()` no longer calls `datetime.utcnow()`."""

    def __init__(self, owner: Breaker, **kw: Any) -> None:
        self._owner = owner
        super().__init__(**kw)

    def open(self) -> None:
        self._state_storage.opened_at = datetime.now(UTC)
        self._owner._opened_at = time.monotonic()
        self.state = self._state_storage.state = CircuitBreakerState.OPEN

    @property
    def opens_at(self) -> datetime | None:
        left = self._owner.retry_after()
        return datetime.now(UTC) + timedelta(seconds=left) if left > 0 else None


class _Listener(CircuitBreakerListener):  # type: ignore[misc]
    def __init__(self, owner: Breaker) -> None:
        self._owner = owner

    def state_change(self, breaker: Any, old: Any, new: Any) -> None:
        self._owner._changed(_NAMES[old.state] if old is not None else "closed", _NAMES[new.state])


@dataclass
class _Attempt:
    breaker: Breaker
    generation: int
    trial: bool
    decided: bool = False


_current: ContextVar[_Attempt | None] = ContextVar("faas_breaker_attempt", default=None)


def counts_as_failure(exc: Exception) -> bool:
    """A 4xx-type ServiceError means the upstream answered: it never trips a breaker."""
    if isinstance(exc, ServiceError):
        return exc.status >= 500
    return True


class Breaker:
    def __init__(
        self,
        name: str,
        *,
        fail_max: int = 5,
        reset_timeout: float = 30.0,
        on_transition: Callable[[str, str, str], None] | None = None,
    ) -> None:
        if fail_max < 1 or reset_timeout <= 0:
            raise ValueError("fail_max must be >= 1 and reset_timeout > 0")
        self.name = name
        self.fail_max = fail_max
        self.reset_timeout = reset_timeout
        self.on_transition = on_transition
        self._opened_at = 0.0
        self._trial_busy = False
        # Bumped on every transition; an outcome from an older generation is stale and ignored.
        self._generation = 0
        self._core = _Core(
            self,
            fail_max=fail_max,
            timeout_duration=timedelta(seconds=reset_timeout),
            listeners=[_Listener(self)],
            name=name,
        )

    @property
    def state(self) -> State:
        return _NAMES[self._core.current_state]

    def retry_after(self) -> float:
        """Seconds until a trial call may go through (0 when closed or half-open)."""
        if self.state != "open":
            return 0.0
        return max(0.0, self._opened_at + self.reset_timeout - time.monotonic())

    def _changed(self, old: State, new: State) -> None:
        if old == new:
            return
        self._generation += 1
        self._trial_busy = False
        if self.on_transition is not None:
            self.on_transition(self.name, old, new)

    def _admit(self) -> _Attempt:
        state = self.state
        if state == "open":
            left = self.retry_after()
            if left > 0:
                raise CircuitOpen(f"{self.name} is failing; calls are refused for {left:.1f}s more", retry_after=left)
            self._core.half_open()
            state = "half-open"
        if state == "half-open":
            if self._trial_busy:
                raise CircuitOpen(f"{self.name} is being probed by a trial call; retry shortly", retry_after=1)
            self._trial_busy = True
            return _Attempt(self, self._generation, trial=True)
        return _Attempt(self, self._generation, trial=False)

    def _settle(self, attempt: _Attempt | None, *, failed: bool | None) -> None:
        """Record an outcome: True failure, False success, None neutral (a 4xx)."""
        if attempt is not None:
            if attempt.decided:
                return
            attempt.decided = True
            if attempt.generation != self._generation:
                return
            if attempt.trial and failed is None:
                failed = False  # the upstream answered the trial: it is back
        if failed is None:
            return
        state = self.state
        if state == "open":
            return  # a late outcome of a call admitted before the breaker opened
        try:
            self._core.call(_fail if failed else _succeed)
        except (_Failure, CircuitBreakerError):
            pass  # the caller raises its own error, never aiobreaker's
        if attempt is not None and attempt.trial:
            self._trial_busy = False

    def record_failure(self) -> None:
        """Count a failure the caller decided itself (e.g. a 503 response that did not raise)."""
        self._settle(self._own_attempt(), failed=True)

    def record_success(self) -> None:
        self._settle(self._own_attempt(), failed=False)

    def abstain(self) -> None:
        """Decide nothing about the current call (e.g. the caller's own deadline cut it short): the count stays, and
        a trial slot it held is freed for the next caller."""
        attempt = self._own_attempt()
        if attempt is None or attempt.decided:
            return
        attempt.decided = True
        if attempt.trial and attempt.generation == self._generation:
            self._trial_busy = False

    def _own_attempt(self) -> _Attempt | None:
        attempt = _current.get()
        return attempt if attempt is not None and attempt.breaker is self else None

    @asynccontextmanager
    async def guard(self) -> AsyncIterator[None]:
        """Run the block through the breaker; raises `CircuitOpen` at once, with no work done, while open."""
        attempt = self._admit()
        token = _current.set(attempt)
        try:
            yield
        except Exception as exc:
            self._settle(attempt, failed=True if counts_as_failure(exc) else None)
            raise
        else:
            self._settle(attempt, failed=False)
        finally:
            # A cancelled block decides nothing; a trial slot it held is freed for the next caller.
            _current.reset(token)
            if attempt.trial and not attempt.decided and attempt.generation == self._generation:
                self._trial_busy = False
