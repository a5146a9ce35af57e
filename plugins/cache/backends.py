"""Where cache entries live: the `CacheBackend` interface and its PostgreSQL and Redis implementations.

Both keep every entry under (tenant, namespace, key) with a real expiry (an expired entry is never served),
and clear a namespace in O(1) by bumping its generation number, which is part of every entry's identity:
entries of an old generation are invisible at once and disappear later (Redis expires them by their TTL;
PostgreSQL overwrites them on the next set of the same key, or `sweep()` deletes them in bounded batches).
Counters are added in batches (`incr_counters`) so that a lookup never waits on a counter write.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from app.db import Database


@dataclass(frozen=True)
class Entry:
    value: bytes
    expires_at: datetime


class CacheBackend(Protocol):
    """Storage for cache entries and counters. Every method is scoped to one tenant."""

    name: str

    async def get(self, *, tenant_id: str, namespace: str, key: str) -> Entry | None:
        """The live entry (not expired, current generation), else None."""
        ...

    async def set(self, *, tenant_id: str, namespace: str, key: str, value: bytes, ttl_seconds: int) -> datetime:
        """Store `value` for `ttl_seconds` (replacing any previous one) and return its expiry time."""
        ...

    async def delete(self, *, tenant_id: str, namespace: str, key: str) -> bool:
        """Remove the entry; True when a live entry was there."""
        ...

    async def clear_namespace(self, *, tenant_id: str, namespace: str) -> None:
        """Make every entry of the namespace invisible at once, without visiting them."""
        ...

    async def incr_counters(self, *, tenant_id: str, counts: Mapping[str, int]) -> None:
        """Add `counts` to the tenant's named counters."""
        ...

    async def get_counters(self, *, tenant_id: str) -> dict[str, int]: ...

    async def sweep(self, *, batch: int = 5000) -> int:
        """Delete up to `batch` expired or cleared entries; the number deleted (0 where storage expires itself)."""
        ...

    async def ready(self) -> dict[str, Any]:
        """`{"ok": ...}`: can the storage be reached now (never raises)."""
        ...

    async def aclose(self) -> None: ...


_GENERATION = "coalesce((SELECT n.generation FROM cache_namespaces n WHERE n.tenant_id = :t AND n.namespace = :ns), 0)"


class PostgresCacheBackend:
    """Entries in the UNLOGGED `cache_entries` table; namespace generations in `cache_namespaces`."""

    name = "postgres"

    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, *, tenant_id: str, namespace: str, key: str) -> Entry | None:
        row = await self.db.fetch_one(
            "SELECT value, expires_at FROM cache_entries WHERE tenant_id = :t AND namespace = :ns AND key = :k "
            f"AND expires_at > clock_timestamp() AND generation = {_GENERATION}",
            {"t": tenant_id, "ns": namespace, "k": key},
        )
        return None if row is None else Entry(value=bytes(row["value"]), expires_at=row["expires_at"])

    async def set(self, *, tenant_id: str, namespace: str, key: str, value: bytes, ttl_seconds: int) -> datetime:
        row = await self.db.fetch_one(
            "INSERT INTO cache_entries (tenant_id, namespace, key, generation, value, expires_at) "
            f"VALUES (:t, :ns, :k, {_GENERATION}, :v, clock_timestamp() + make_interval(secs => :ttl)) "
            "ON CONFLICT (tenant_id, namespace, key) DO UPDATE SET generation = EXCLUDED.generation, "
            "value = EXCLUDED.value, expires_at = EXCLUDED.expires_at RETURNING expires_at",
            {"t": tenant_id, "ns": namespace, "k": key, "v": value, "ttl": float(ttl_seconds)},
        )
        assert row is not None
        expires_at: datetime = row["expires_at"]
        return expires_at

    async def delete(self, *, tenant_id: str, namespace: str, key: str) -> bool:
        row = await self.db.fetch_one(
            "DELETE FROM cache_entries WHERE tenant_id = :t AND namespace = :ns AND key = :k "
            f"RETURNING (expires_at > clock_timestamp() AND generation = {_GENERATION}) AS live",
            {"t": tenant_id, "ns": namespace, "k": key},
        )
        return bool(row and row["live"])

    async def clear_namespace(self, *, tenant_id: str, namespace: str) -> None:
        await self.db.execute(
            "INSERT INTO cache_namespaces (tenant_id, namespace, generation) VALUES (:t, :ns, 1) "
            "ON CONFLICT (tenant_id, namespace) DO UPDATE SET generation = cache_namespaces.generation + 1",
            {"t": tenant_id, "ns": namespace},
        )

    async def incr_counters(self, *, tenant_id: str, counts: Mapping[str, int]) -> None:
        if not counts:
            return
        await self.db.execute(
            "INSERT INTO cache_counters (tenant_id, name, value) "
            "SELECT :t, n, v FROM unnest(CAST(:names AS text[]), CAST(:values AS bigint[])) AS c(n, v) "
            "ON CONFLICT (tenant_id, name) DO UPDATE SET value = cache_counters.value + EXCLUDED.value",
            {"t": tenant_id, "names": list(counts), "values": list(counts.values())},
        )

    async def get_counters(self, *, tenant_id: str) -> dict[str, int]:
        rows = await self.db.fetch_all("SELECT name, value FROM cache_counters WHERE tenant_id = :t", {"t": tenant_id})
        return {r["name"]: int(r["value"]) for r in rows}

    async def sweep(self, *, batch: int = 5000) -> int:
        rows = await self.db.fetch_all(
            "DELETE FROM cache_entries WHERE ctid IN (SELECT e.ctid FROM cache_entries e "
            "LEFT JOIN cache_namespaces n ON n.tenant_id = e.tenant_id AND n.namespace = e.namespace "
            "WHERE e.expires_at <= clock_timestamp() OR e.generation < coalesce(n.generation, 0) LIMIT :batch "
            "FOR UPDATE OF e SKIP LOCKED) RETURNING 1",
            {"batch": batch},
        )
        return len(rows)

    async def ready(self) -> dict[str, Any]:
        return {"ok": True, "backend": self.name}  # the database itself is /health/ready's own check

    async def aclose(self) -> None:
        return None


# One round trip per operation: the generation is read and the entry addressed inside the same script.
# The entry keys are built in the script (not passed in KEYS), which standalone Redis and Sentinel allow;
# the `{tenant:namespace}` hash tag keeps a namespace's keys in one slot for a future cluster mode.
_LUA_GET = """
local g = redis.call('GET', KEYS[1]) or '0'
local k = ARGV[1] .. g .. ':' .. ARGV[2]
local v = redis.call('GET', k)
if not v then return false end
return {v, redis.call('PTTL', k)}
"""
_LUA_SET = """
local g = redis.call('GET', KEYS[1]) or '0'
redis.call('SET', ARGV[1] .. g .. ':' .. ARGV[2], ARGV[3], 'PX', ARGV[4])
return 1
"""
_LUA_DEL = """
local g = redis.call('GET', KEYS[1]) or '0'
return redis.call('DEL', ARGV[1] .. g .. ':' .. ARGV[2])
"""


class RedisCacheBackend:
    """Entries as Redis strings with a native TTL, under `prefix`; one hash of counters per tenant."""

    name = "redis"

    def __init__(self, url: str, *, prefix: str) -> None:
        import redis.asyncio as aioredis  # lazy: only deployments with REDIS_URL need it

        self.prefix = prefix
        self.client: Any = aioredis.Redis.from_url(url, decode_responses=False)
        self._get = self.client.register_script(_LUA_GET)
        self._set = self.client.register_script(_LUA_SET)
        self._del = self.client.register_script(_LUA_DEL)

    def _keys(self, tenant_id: str, namespace: str) -> tuple[str, str]:
        tag = f"{{{tenant_id}:{namespace}}}"
        return f"{self.prefix}gen:{tag}", f"{self.prefix}val:{tag}:"

    async def get(self, *, tenant_id: str, namespace: str, key: str) -> Entry | None:
        gen_key, base = self._keys(tenant_id, namespace)
        found = await self._get(keys=[gen_key], args=[base, key])
        if not found:
            return None
        value, pttl = found
        if pttl < 0:  # -2: expired between GET and PTTL; -1 cannot happen (every SET has PX)
            return None
        return Entry(value=bytes(value), expires_at=datetime.now(UTC) + timedelta(milliseconds=int(pttl)))

    async def set(self, *, tenant_id: str, namespace: str, key: str, value: bytes, ttl_seconds: int) -> datetime:
        gen_key, base = self._keys(tenant_id, namespace)
        expires_at = datetime.now(UTC) + timedelta(seconds=ttl_seconds)
        await self._set(keys=[gen_key], args=[base, key, value, ttl_seconds * 1000])
        return expires_at

    async def delete(self, *, tenant_id: str, namespace: str, key: str) -> bool:
        gen_key, base = self._keys(tenant_id, namespace)
        return bool(await self._del(keys=[gen_key], args=[base, key]))

    async def clear_namespace(self, *, tenant_id: str, namespace: str) -> None:
        gen_key, _ = self._keys(tenant_id, namespace)
        await self.client.incr(gen_key)

    def _counter_key(self, tenant_id: str) -> str:
        return f"{self.prefix}counters:{tenant_id}"

    async def incr_counters(self, *, tenant_id: str, counts: Mapping[str, int]) -> None:
        if not counts:
            return
        async with self.client.pipeline(transaction=False) as pipe:
            for name, value in counts.items():
                pipe.hincrby(self._counter_key(tenant_id), name, value)
            await pipe.execute()

    async def get_counters(self, *, tenant_id: str) -> dict[str, int]:
        raw = await self.client.hgetall(self._counter_key(tenant_id))
        return {k.decode(): int(v) for k, v in raw.items()}

    async def sweep(self, *, batch: int = 5000) -> int:
        return 0  # Redis expires entries itself; cleared generations expire with their entries' TTLs

    async def ready(self) -> dict[str, Any]:
        try:
            await self.client.ping()
        except Exception as exc:  # a readiness probe reports, never raises
            return {"ok": False, "backend": self.name, "error": type(exc).__name__}
        return {"ok": True, "backend": self.name}

    async def aclose(self) -> None:
        await self.client.aclose()
