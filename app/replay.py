"""Remembering the signed internal calls already received, so that each is accepted once (app.signing).

A verified call's nonce is remembered until its timestamp leaves the freshness window; offered again before
then, it is a replay. `MemoryReplayGuard` is the default and holds per replica: per-second buckets of 64-bit
nonce prefixes (about 60 bytes a call; 250,000 calls, more than one worker verifies in a minute, is ~15 MB). Full,
it refuses further calls with a retryable 503 rather than forget one early. `RedisReplayGuard` (chosen when
`REDIS_URL` is set) holds across replicas: one `SET NX EX` per call, a round trip on the verifying path. If Redis
fails it falls back to this replica's memory for a few seconds at a time and logs it, so an outage of the shared
store narrows the guard to one replica rather than stopping internal calls.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Protocol

from app.errors import DeploymentUnavailable

log = logging.getLogger("faas.replay")


class ReplayGuard(Protocol):
    async def first_time(self, nonce: str, expires: float) -> bool:
        """True the first time `nonce` is offered; False when it was offered before. `expires` (Unix time) is when
        its call stops being fresh, the latest it must be remembered. Raises `DeploymentUnavailable` when it
        cannot remember any more."""
        ...

    async def aclose(self) -> None: ...


class MemoryReplayGuard:
    def __init__(self, capacity: int = 250_000) -> None:
        self.capacity = capacity
        self._buckets: dict[int, set[int]] = {}
        self._size = 0
        self._pruned_at = 0

    def __len__(self) -> int:
        return self._size

    def _prune(self, now: int) -> None:
        if now == self._pruned_at:
            return
        self._pruned_at = now
        for second in [s for s in self._buckets if s < now]:
            self._size -= len(self._buckets.pop(second))

    async def first_time(self, nonce: str, expires: float) -> bool:
        self._prune(int(time.time()))
        key = int(nonce[:16], 16)  # 64 bits: two live nonces collide once in ~10^9 full memories
        bucket = self._buckets.setdefault(math.ceil(expires), set())
        if key in bucket:
            return False
        if self._size >= self.capacity:
            raise DeploymentUnavailable(
                "this replica is at its limit of signed calls per minute; retry shortly", cause="replay-memory"
            )
        bucket.add(key)
        self._size += 1
        return True

    async def aclose(self) -> None:
        self._buckets.clear()
        self._size = 0


class RedisReplayGuard:
    """`SET <prefix><nonce> NX EX <seconds left>` in the Redis every replica shares."""

    def __init__(self, url: str, *, prefix: str = "faas:seen:", fallback: MemoryReplayGuard | None = None) -> None:
        import redis.asyncio as aioredis

        self._redis = aioredis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._prefix = prefix
        self._local = fallback or MemoryReplayGuard()
        self._local_until = 0.0

    async def first_time(self, nonce: str, expires: float) -> bool:
        import redis.exceptions

        now = time.monotonic()
        if now >= self._local_until:
            seconds = max(1, math.ceil(expires - time.time()))
            try:
                return bool(await self._redis.set(self._prefix + nonce, b"1", nx=True, ex=seconds))
            except (redis.exceptions.RedisError, OSError) as exc:
                log.warning(
                    "replay guard: Redis failed (%s: %s); this replica remembers alone for 5 s", type(exc).__name__, exc
                )
                self._local_until = now + 5.0
        return await self._local.first_time(nonce, expires)

    async def aclose(self) -> None:
        await self._redis.aclose()
