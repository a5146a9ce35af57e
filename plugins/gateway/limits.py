"""Per-tenant admission: allowed models, requests and tokens per minute, and a monthly budget.

A call reserves its tokens (prompt estimate + max_tokens) and its worst-case cost before it goes upstream, in
one atomic step shared by every replica; the ledger settles the reservation with the real usage afterwards.
PostgreSQL does it by default (one UPSERT on the tenant's counter row), and the ledger then settles in the same
transaction that writes the call's usage row; with `REDIS_URL` a Lua script does it on Redis, with the policy
read from PostgreSQL and kept for a few seconds per replica, and the ledger settles there once the row is written.
Over a limit the caller gets 429 with `Retry-After`; a model outside the tenant's allow-list is a 404, as if it
did not exist.

A tenant with no RPM, TPM or budget (most tenants) has nothing to count before a call: each replica keeps the
tenant's policy (`PolicyCache`) and admits such a call without a round trip, checking the allow-list itself; the
call's real tokens and cost still reach the counters when the ledger settles (a reservation of nothing, settled
with what was used). A policy change notifies every replica in its own transaction (PostgreSQL NOTIFY), which drops
its copy; while a replica cannot listen, it trusts no copy and every call takes the counted path.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Protocol

from cachetools import TTLCache

from app.errors import NotFound, RateLimited, ServiceError
from plugins.gateway.store import POLICY_CHANNEL, GatewayStore, Settlement

__all__ = ["POLICY_CHANNEL", "Limiter", "PolicyCache", "PostgresLimiter", "RedisLimiter", "Reservation", "refusal"]


@dataclass(frozen=True)
class Reservation:
    tenant_id: str
    window: datetime
    period: date
    tokens: int
    cost: float

    def settle(self, tokens: int, cost: float) -> Settlement:
        return Settlement(self.tenant_id, self.window, self.period, tokens - self.tokens, cost - self.cost)


@dataclass(frozen=True)
class Policy:
    allowed_models: frozenset[str] | None
    rpm: int | None
    tpm: int | None
    monthly_budget_usd: float | None

    @property
    def counts_nothing(self) -> bool:
        """No limit needs a counter: a call is admitted on the allow-list alone."""
        return self.rpm is None and self.tpm is None and self.monthly_budget_usd is None

    def as_dict(self) -> dict[str, Any]:
        allowed = None if self.allowed_models is None else sorted(self.allowed_models)
        return {
            "allowed_models": allowed,
            "rpm": self.rpm,
            "tpm": self.tpm,
            "monthly_budget_usd": self.monthly_budget_usd,
        }


class PolicyCache:
    """Each tenant's policy as this replica last read it, trusted only while `live()` says the replica hears every
    change (see the module docstring); `forget` is called for each change heard, `reset` when hearing resumes.

    A read that raced a change is not kept: every change bumps `generation`, and a read stores its row only if no
    change was heard while it ran.
    """

    def __init__(
        self, store: GatewayStore, *, live: Any = lambda: True, ttl: float = 300.0, size: int = 100_000
    ) -> None:
        self._store = store
        self._live = live
        self._cache: TTLCache[str, Policy] = TTLCache(maxsize=size, ttl=ttl)
        self.generation = 0

    def listening(self, live: Callable[[], bool]) -> None:
        """Trust copies only while `live()` (the replica hears every change); until called, none is trusted."""
        self._live = live

    def forget(self, tenant_id: str) -> None:
        self.generation += 1
        self._cache.pop(tenant_id, None)

    def reset(self) -> None:
        self.generation += 1
        self._cache.clear()

    async def get(self, tenant_id: str) -> Policy | None:
        """The tenant's policy, or None when this replica cannot vouch for a copy (then count the call)."""
        if not self._live():
            return None
        hit = self._cache.get(tenant_id)
        if hit is not None:
            return hit
        generation = self.generation
        policy = await self.read(tenant_id)
        if generation == self.generation and self._live():
            self._cache[tenant_id] = policy
        return policy

    async def read(self, tenant_id: str) -> Policy:
        row = await self._store.get_limits(tenant_id=tenant_id)
        allowed = row.get("allowed_models")
        return Policy(
            allowed_models=None if allowed is None else frozenset(allowed),
            rpm=row.get("rpm"),
            tpm=row.get("tpm"),
            monthly_budget_usd=row.get("monthly_budget_usd"),
        )


def _uncounted(policy: Policy, tenant_id: str, model: str) -> Reservation:
    """Admit a call of a tenant whose policy counts nothing: the allow-list is the only check, nothing is reserved,
    and the settlement adds the call's real use to whatever counters the tenant has."""
    now = datetime.now(UTC)
    if policy.allowed_models is not None and model not in policy.allowed_models:
        error = refusal(policy.as_dict(), model=model, tokens=0, cost=0, requests=0, used_tokens=0, spent=0, now=now)
        assert error is not None
        raise error
    return Reservation(tenant_id, now.replace(second=0, microsecond=0), date(now.year, now.month, 1), 0, 0.0)


class Limiter(Protocol):
    # True when the counters live in the gateway's PostgreSQL tables, so that the ledger settles a reservation in
    # the transaction that writes the call's usage row (`GatewayStore.write_usage`) rather than through `settle`.
    settles_in_database: bool

    async def admit(self, *, tenant_id: str, model: str, tokens: int, cost: float) -> Reservation: ...

    async def settle(self, items: Sequence[Settlement]) -> None: ...


def _next_month(d: date) -> date:
    return date(d.year + (d.month == 12), d.month % 12 + 1, 1)


def refusal(
    policy: dict[str, Any],
    *,
    model: str,
    tokens: int,
    cost: float,
    requests: int,
    used_tokens: int,
    spent: float,
    now: datetime,
) -> ServiceError | None:
    """Why a request is refused under `policy` given the current counters (None: it would pass)."""
    allowed = policy.get("allowed_models")
    if allowed is not None and model not in allowed:
        return NotFound(
            f"model {model!r} is not available to this tenant; use one of: {', '.join(sorted(allowed)) or '(none)'}",
            extra={"code": "model_not_found", "allowed_models": sorted(allowed)},
        )
    to_minute = str(max(1, 60 - now.second))
    rpm, tpm, budget = policy.get("rpm"), policy.get("tpm"), policy.get("monthly_budget_usd")
    if rpm is not None and requests + 1 > rpm:
        return RateLimited(
            f"over the limit of {rpm} requests per minute for this tenant",
            extra={"code": "rate_limit_exceeded", "limit": "rpm"},
            headers={"Retry-After": to_minute},
        )
    if tpm is not None and tokens > tpm:
        return RateLimited(
            f"this request may use {tokens} tokens (prompt estimate + max_tokens), more than the tenant's limit of "
            f"{tpm} tokens per minute: lower max_tokens or shorten the prompt",
            extra={"code": "rate_limit_exceeded", "limit": "tpm"},
            headers={"Retry-After": "60"},
        )
    if tpm is not None and used_tokens + tokens > tpm:
        return RateLimited(
            f"over the limit of {tpm} tokens per minute for this tenant ({used_tokens} in use this minute)",
            extra={"code": "rate_limit_exceeded", "limit": "tpm"},
            headers={"Retry-After": to_minute},
        )
    if budget is not None and spent + cost > budget:
        reopen = datetime.combine(_next_month(now.date()), datetime.min.time(), tzinfo=UTC)
        return RateLimited(
            f"the tenant's monthly budget of ${budget:.4f} is spent (${spent:.4f} used)",
            extra={"code": "insufficient_quota", "limit": "budget"},
            headers={"Retry-After": str(max(1, math.ceil((reopen - now).total_seconds())))},
        )
    return None


class PostgresLimiter:
    settles_in_database = True

    def __init__(self, store: GatewayStore, policies: PolicyCache) -> None:
        self._store = store
        self._policies = policies

    async def admit(self, *, tenant_id: str, model: str, tokens: int, cost: float) -> Reservation:
        policy = await self._policies.get(tenant_id)
        if policy is not None and policy.counts_nothing:
            return _uncounted(policy, tenant_id, model)
        for _ in range(3):
            got = await self._store.admit(tenant_id=tenant_id, model=model, tokens=tokens, cost=cost)
            if got is not None:
                return Reservation(tenant_id, got[0], got[1], tokens, cost)
            row = await self._store.get_limits(tenant_id=tenant_id)
            current = row["window_start"] == row["this_minute"]
            error = refusal(
                row,
                model=model,
                tokens=tokens,
                cost=cost,
                requests=row["window_requests"] if current else 0,
                used_tokens=row["window_tokens"] if current else 0,
                spent=row["period_spent_usd"] if row["budget_period"] == row["this_month"] else 0.0,
                now=row["now"],
            )
            if error is not None:
                raise error
            # The minute rolled over between the two statements: try again.
        raise RateLimited("the tenant's limits are contended; retry", headers={"Retry-After": "1"})

    async def settle(self, items: Sequence[Settlement]) -> None:
        await self._store.settle(items)


_LUA = """
local now = redis.call('TIME')
local sec = tonumber(now[1])
local minute = sec - (sec % 60)
local rk = KEYS[1] .. ':m:' .. minute
local sk = KEYS[1] .. ':b:' .. ARGV[6]
local tok, cost = tonumber(ARGV[1]), tonumber(ARGV[2])
local rpm, tpm, budget = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local r = tonumber(redis.call('HGET', rk, 'r') or '0')
local k = tonumber(redis.call('HGET', rk, 'k') or '0')
local spent = tonumber(redis.call('GET', sk) or '0')
local ok = (rpm < 0 or r + 1 <= rpm) and (tpm < 0 or k + tok <= tpm) and (budget < 0 or spent + cost <= budget)
if ok then
  redis.call('HINCRBY', rk, 'r', 1)
  redis.call('HINCRBY', rk, 'k', tok)
  redis.call('EXPIRE', rk, 180)
  redis.call('INCRBYFLOAT', sk, ARGV[2])
  redis.call('EXPIRE', sk, 3456000)
end
return {ok and 1 or 0, minute, r, k, tostring(spent), sec}
"""


class RedisLimiter:
    """The same contract on Redis; counters live there, the policy in PostgreSQL (kept by the `PolicyCache`)."""

    settles_in_database = False

    def __init__(self, store: GatewayStore, policies: PolicyCache, url: str, *, prefix: str = "faas:gw") -> None:
        import redis.asyncio as aioredis  # lazy: only with REDIS_URL

        self._store = store
        self._policies = policies
        self._redis = aioredis.Redis.from_url(url)
        self._script = self._redis.register_script(_LUA)
        self._prefix = prefix

    def _key(self, tenant_id: str) -> str:
        return f"{self._prefix}:{{{tenant_id}}}"

    async def admit(self, *, tenant_id: str, model: str, tokens: int, cost: float) -> Reservation:
        cached = await self._policies.get(tenant_id)
        if cached is not None and cached.counts_nothing:
            return _uncounted(cached, tenant_id, model)
        policy = (cached or await self._policies.read(tenant_id)).as_dict()
        allowed = policy.get("allowed_models")
        now = datetime.now(UTC)
        if allowed is not None and model not in allowed:
            error = refusal(policy, model=model, tokens=0, cost=0, requests=0, used_tokens=0, spent=0, now=now)
            assert error is not None
            raise error
        period = date(now.year, now.month, 1)

        def lim(v: Any) -> str:
            return "-1" if v is None else repr(float(v)) if isinstance(v, float) else str(v)

        ok, minute, r, k, spent, sec = await self._script(
            keys=[self._key(tenant_id)],
            args=[
                tokens,
                repr(cost),
                lim(policy["rpm"]),
                lim(policy["tpm"]),
                lim(policy["monthly_budget_usd"]),
                period.strftime("%Y%m"),
            ],
        )
        window = datetime.fromtimestamp(int(minute), UTC)
        if ok:
            return Reservation(tenant_id, window, period, tokens, cost)
        error = refusal(
            policy,
            model=model,
            tokens=tokens,
            cost=cost,
            requests=int(r),
            used_tokens=int(k),
            spent=float(spent),
            now=datetime.fromtimestamp(int(sec), UTC),
        )
        raise error or RateLimited("the tenant's limits are contended; retry", headers={"Retry-After": "1"})

    async def settle(self, items: Sequence[Settlement]) -> None:
        if not items:
            return
        # MULTI/EXEC: a batch is applied whole or not at all, so a failed one may be retried. The ledger settles one
        # tenant per call, so the keys share the tenant's hash slot (a Redis Cluster refuses MULTI across slots).
        async with self._redis.pipeline(transaction=True) as pipe:
            for s in items:
                key = self._key(s.tenant_id)
                if s.tokens:
                    rate = f"{key}:m:{int(s.window.timestamp())}"
                    pipe.hincrby(rate, "k", s.tokens)
                    pipe.expire(rate, 180)
                if s.cost:
                    spend = f"{key}:b:{s.period.strftime('%Y%m')}"
                    pipe.incrbyfloat(spend, s.cost)
                    pipe.expire(spend, 3456000)
            await pipe.execute()

    async def aclose(self) -> None:
        await self._redis.aclose()
